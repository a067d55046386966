"""The leader's `aggregator-{window}-v{version}` object: the exact payload bytes it aggregated
that window, so a late joiner or a restarted neuron can replay the outer step bit-identically.

Layout: MAGIC (8 bytes) | header length (u32 LE) | JSON header {window, uids, sizes} | payloads.
Each payload inside is validated again by `wire.decode` when replayed.

`write_aggregator` writes the same bytes part by part to a file, copying payloads that wait on
local disk (the validator's spool) in blocks, so the leader never holds its window's payloads
(20 x 1.4 GB at 72B) in memory to build the object.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from typing import BinaryIO, Mapping, NamedTuple, Union

from templar_jax.untrusted_json import json_int, json_int_list, loads_untrusted

MAGIC = b"TJAGG\x00\x01\x00"
MAX_HEADER = 1 << 16
HEADER_PREFIX = len(MAGIC) + 4  # magic + header length
COPY_BLOCK = 16 << 20  # bytes of a file payload held at once while writing the object

Source = Union[bytes, "os.PathLike[str]"]  # a payload's bytes, or the file that holds exactly them
_IN_MEMORY = (bytes, bytearray, memoryview)


class AggregatorObjectError(ValueError):
    """Malformed aggregator object (reason in message)."""


def aggregator_prefix(window: int, sizes: Mapping[int, int]) -> bytes:
    """The object's bytes before its payloads (magic, header length, header), from each uid's
    payload size; the payloads follow in uid order."""
    uids = sorted(sizes)
    header = json.dumps({"window": int(window), "uids": uids, "sizes": [int(sizes[u]) for u in uids]}).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header])


def encode_aggregator(window: int, payloads: Mapping[int, bytes]) -> bytes:
    uids = sorted(payloads)
    return b"".join([aggregator_prefix(window, {u: len(payloads[u]) for u in uids}), *(payloads[u] for u in uids)])


def write_aggregator(out: BinaryIO, window: int, sources: Mapping[int, Source], *, block: int = COPY_BLOCK) -> int:
    """`encode_aggregator`'s bytes written to `out` part by part; returns how many. A payload given
    as a file path is copied in blocks of `block` bytes, so at most one block (or one payload
    given as bytes) is in memory. A file whose size changes while it is copied is an error."""
    sizes = {u: _size(src) for u, src in sources.items()}
    written = out.write(aggregator_prefix(window, sizes))
    for uid in sorted(sources):
        src = sources[uid]
        if isinstance(src, _IN_MEMORY):
            written += out.write(src)
            continue
        start = out.tell()
        with open(src, "rb") as f:
            shutil.copyfileobj(f, out, block)
        copied = out.tell() - start
        if copied != sizes[uid]:
            raise AggregatorObjectError(f"payload of uid {uid} ({os.fspath(src)}) was {sizes[uid]} bytes, "
                                        f"copied {copied}")
        written += copied
    return written


def _size(src: Source) -> int:
    return len(src) if isinstance(src, _IN_MEMORY) else os.stat(src).st_size


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
