"""The leader's `aggregator-{window}-v{version}` object: the exact payload bytes it aggregated
that window, so a late joiner or a restarted neuron can replay the outer step bit-identically.

Layout: MAGIC (8 bytes) | header length (u32 LE) | JSON header {window, uids, sizes} | payloads.
Each payload inside is validated again by `wire.decode` when replayed.
"""

from __future__ import annotations

import json
import struct
from typing import Mapping, NamedTuple

from templar_jax.untrusted_json import json_int, json_int_list, loads_untrusted

MAGIC = b"TJAGG\x00\x01\x00"
MAX_HEADER = 1 << 16
HEADER_PREFIX = len(MAGIC) + 4  # magic + header length


class AggregatorObjectError(ValueError):
    """Malformed aggregator object (reason in message)."""


def encode_aggregator(window: int, payloads: Mapping[int, bytes]) -> bytes:
    uids = sorted(payloads)
    header = json.dumps({"window": int(window), "uids": uids,
                         "sizes": [len(payloads[u]) for u in uids]}).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *(payloads[u] for u in uids)])


class AggregatorHeader(NamedTuple):
    window: int
    uids: list[int]
    sizes: list[int]  # payload bytes per uid
    payload_offset: int  # where the first payload starts in the object

    @property
    def object_size(self) -> int:
        return self.payload_offset + sum(self.sizes)


def header_length(prefix: bytes) -> int:
    """The header's length from the object's first `HEADER_PREFIX` bytes (to read just the header)."""
    if len(prefix) < HEADER_PREFIX or prefix[: len(MAGIC)] != MAGIC:
        raise AggregatorObjectError("bad magic")
    (hlen,) = struct.unpack_from("<I", prefix, len(MAGIC))
    if hlen > MAX_HEADER:
        raise AggregatorObjectError(f"header of {hlen} bytes is too long")
    return hlen


def parse_aggregator_header(data: bytes, *, window: int | None = None) -> AggregatorHeader:
    """The header from the object's first bytes (at least `HEADER_PREFIX` + the header length):
    who was aggregated and each payload's size, without reading the payloads."""
    hlen = header_length(data)
    if HEADER_PREFIX + hlen > len(data):
        raise AggregatorObjectError("truncated inside the header")
    err = AggregatorObjectError
    header = loads_untrusted(bytes(data[HEADER_PREFIX:HEADER_PREFIX + hlen]), "aggregator header", error=err)
    if not isinstance(header, dict):
        raise AggregatorObjectError("aggregator header is not a JSON object")
    uids = json_int_list(header.get("uids"), "aggregator uids", error=err, minimum=0)
    sizes = json_int_list(header.get("sizes"), "aggregator sizes", error=err, minimum=0)
    got_window = json_int(header.get("window"), "aggregator window", error=err, minimum=0)
    if window is not None and got_window != window:
        raise AggregatorObjectError(f"object is for window {got_window}, expected {window}")
    if len(uids) != len(sizes) or any(s < 0 for s in sizes) or len(set(uids)) != len(uids):
        raise AggregatorObjectError("uids and sizes disagree")
    return AggregatorHeader(got_window, uids, sizes, HEADER_PREFIX + hlen)


def decode_aggregator(data: bytes, *, window: int | None = None) -> dict[int, bytes]:
    header = parse_aggregator_header(data, window=window)
    if header.object_size != len(data):
        raise AggregatorObjectError("payload sizes do not add up to the object size")
    out = {}
    offset = header.payload_offset
    for uid, size in zip(header.uids, header.sizes):
        out[uid] = data[offset:offset + size]
        offset += size
    return out
