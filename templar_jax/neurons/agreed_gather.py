"""A window's gather made once for a neuron that spans processes: process 0 downloads and
validates (`gather_window`), every other process receives the outcome and the valid payloads'
bytes and decodes them itself (the same bytes and codec give the same arrays). With a spool
(the validator's), each process keeps its received payloads in its own spool, as process 0 does.

Wire between the processes (trusted, our own): 8-byte little-endian header length, a JSON
header {window, uids, sizes, stored_at, failed, invalid}, then the valid payloads' bytes in
`uids` order.
"""

from __future__ import annotations

import json
import struct
from typing import Callable

from templar_jax.multihost.agree import SoloAgreement
from templar_jax.neurons.exchange import WindowPayloads
from templar_jax.neurons.spool import PayloadSpool, SpooledBytes
from templar_jax.protocol.codec import PayloadCodec


def encode_gathered(got: WindowPayloads) -> bytes:
    uids = sorted(got.valid)
    header = {"window": got.window, "uids": uids, "sizes": [len(got.raw[u]) for u in uids],
              "stored_at": {str(u): t for u, t in got.stored_at.items()},
              "failed": {str(u): r for u, r in got.failed.items()}, "invalid": sorted(got.invalid)}
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(got.raw[u] for u in uids)


def decode_gathered(data: bytes, codec: PayloadCodec, version: str, *, keep_raw: bool,
                    spool: PayloadSpool | None = None) -> WindowPayloads:
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + n])
    window = int(header["window"])
    out = WindowPayloads(window, stored_at={int(u): float(t) for u, t in header["stored_at"].items()},
                         failed={int(u): r for u, r in header["failed"].items()},
                         invalid={int(u) for u in header["invalid"]})
    at = 8 + n
    for uid, size in zip(header["uids"], header["sizes"]):
        raw = data[at:at + size]
        at += size
        payload, _ = codec.decode(raw, expected_meta={"window": window, "uid": uid, "version": version})
        if spool is not None:  # on disk, like process 0's (one payload in memory at a time)
            payload = spool.put(window, uid, raw, tuple(payload))
        out.valid[uid] = payload
        if keep_raw and spool is None:
            out.raw[uid] = raw
    if keep_raw and spool is not None:
        out.raw = SpooledBytes(out.valid)
    return out


def agreed_gather(agreement: SoloAgreement, window: int, fetch: Callable[[bool], WindowPayloads], *,
                  codec: PayloadCodec, version: str, keep_raw: bool,
                  spool: PayloadSpool | None = None) -> WindowPayloads:
    """`fetch(keep_raw)` on process 0, its outcome on every process (one process: just fetch).
    `spool`: this process's own (process 0's `fetch` spools into its own)."""
    if not agreement.multiprocess:
        return fetch(keep_raw)
    fetched: list[WindowPayloads] = []

    def on_leader() -> bytes:
        fetched.append(fetch(True))
        return encode_gathered(fetched[0])

    data = agreement.blob(f"gather window {window}", on_leader)
    if fetched:
        got = fetched[0]
        if not keep_raw:
            got.raw = {}  # a spooled gather's raw is a read-only view of its files
        return got
    return decode_gathered(data, codec, version, keep_raw=keep_raw, spool=spool)
