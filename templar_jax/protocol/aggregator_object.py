"""The leader's `aggregator-{window}-v{version}` object: the exact payload bytes it aggregated
that window, so a late joiner or a restarted neuron can replay the outer step bit-identically.

Layout: MAGIC (8 bytes) | header length (u32 LE) | JSON header {window, uids, sizes} | payloads.
Each payload inside is validated again by `wire.decode` when replayed.
"""

from __future__ import annotations

import json
import struct
from typing import Mapping

from templar_jax.untrusted_json import json_int, json_int_list, loads_untrusted

MAGIC = b"TJAGG\x00\x01\x00"
MAX_HEADER = 1 << 16


class AggregatorObjectError(ValueError):
    """Malformed aggregator object (reason in message)."""


def encode_aggregator(window: int, payloads: Mapping[int, bytes]) -> bytes:
    uids = sorted(payloads)
    header = json.dumps({"window": int(window), "uids": uids,
                         "sizes": [len(payloads[u]) for u in uids]}).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *(payloads[u] for u in uids)])


def decode_aggregator(data: bytes, *, window: int | None = None) -> dict[int, bytes]:
    if len(data) < len(MAGIC) + 4 or data[: len(MAGIC)] != MAGIC:
        raise AggregatorObjectError("bad magic")
    (hlen,) = struct.unpack_from("<I", data, len(MAGIC))
    if hlen > MAX_HEADER:
        raise AggregatorObjectError(f"header of {hlen} bytes is too long")
    start = len(MAGIC) + 4
    if start + hlen > len(data):
        raise AggregatorObjectError("truncated inside the header")
    err = AggregatorObjectError
    header = loads_untrusted(bytes(data[start:start + hlen]), "aggregator header", error=err)
    if not isinstance(header, dict):
        raise AggregatorObjectError("aggregator header is not a JSON object")
    uids = json_int_list(header.get("uids"), "aggregator uids", error=err, minimum=0)
    sizes = json_int_list(header.get("sizes"), "aggregator sizes", error=err, minimum=0)
    got_window = json_int(header.get("window"), "aggregator window", error=err, minimum=0)
    if window is not None and got_window != window:
        raise AggregatorObjectError(f"object is for window {got_window}, expected {window}")
    if len(uids) != len(sizes) or any(s < 0 for s in sizes) or len(set(uids)) != len(uids):
        raise AggregatorObjectError("uids and sizes disagree")
    offset = start + hlen
    if offset + sum(sizes) != len(data):
        raise AggregatorObjectError("payload sizes do not add up to the object size")
    out = {}
    for uid, size in zip(uids, sizes):
        out[uid] = data[offset:offset + size]
        offset += size
    return out
