"""A window's gather made once for a neuron that spans processes: process 0 downloads and
validates (`gather_window`); every other process receives the outcome and gets the valid
payloads' bytes in one of two ways (run config `multihost.payload_reads`), then decodes them
itself (the same bytes and codec give the same arrays). With a spool (the validator's), each
process keeps its payloads in its own spool, as process 0 does.

- `leader`: process 0 hands on the bytes through the coordination service. Wire (trusted, our
  own): 8-byte little-endian header length, the JSON header {window, uids, sizes, stored_at,
  failed, invalid}, then the valid payloads' bytes in `uids` order.
- `every_host`: process 0 hands on the header alone, with each valid payload's sha256; each
  process reads the payloads from the peers' buckets itself (`neurons.host_reads`), reports the
  uids it could not read as process 0 did (one `gather_from_all` step), and process 0 then hands
  on exactly those uids' bytes, one decision each, so every process ends with process 0's bytes.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Callable

from templar_jax.multihost.agree import SoloAgreement
from templar_jax.neurons.exchange import WindowPayloads, accept
from templar_jax.neurons.host_reads import HostReads, payload_digest, read_here
from templar_jax.neurons.spool import PayloadSpool, SpooledBytes
from templar_jax.protocol.codec import PayloadCodec

log = logging.getLogger(__name__)

# process 0 waits for the others' reports this long past the gather deadline: their own reads end
# by the deadline, this covers decoding (and spooling) the payloads still in flight then
REPORT_MARGIN_S = 300.0


def gathered_header(got: WindowPayloads, sizes: list[int], digests: list[str] | None = None) -> dict:
    """The outcome of `got` with its valid payloads' sizes (and sha256s), in uid order. Callers
    read each payload once for these (`got.raw` of a spooled gather reads its file per access)."""
    header = {"window": got.window, "uids": sorted(got.valid), "sizes": sizes,
              "stored_at": {str(u): t for u, t in got.stored_at.items()},
              "failed": {str(u): r for u, r in got.failed.items()}, "invalid": sorted(got.invalid)}
    if digests is not None:
        header["sha256"] = digests
    return header


def outcome_of(header: dict) -> WindowPayloads:
    """The gather's outcome as the header states it (no payloads yet)."""
    return WindowPayloads(int(header["window"]), stored_at={int(u): float(t) for u, t in header["stored_at"].items()},
                          failed={int(u): r for u, r in header["failed"].items()},
                          invalid={int(u) for u in header["invalid"]})


def encode_gathered(got: WindowPayloads) -> bytes:
    data = [got.raw[u] for u in sorted(got.valid)]
    head = json.dumps(gathered_header(got, [len(d) for d in data])).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(data)


def decode_gathered(data: bytes, codec: PayloadCodec, version: str, *, keep_raw: bool,
                    spool: PayloadSpool | None = None) -> WindowPayloads:
    (n,) = struct.unpack_from("<Q", data)
    header = json.loads(data[8:8 + n])
    out = outcome_of(header)
    at = 8 + n
    for uid, size in zip(header["uids"], header["sizes"]):
        raw = data[at:at + size]
        at += size
        # with a spool: on disk, like process 0's (one payload in memory at a time)
        out.valid[uid] = accept(raw, out.window, uid, codec=codec, version=version, spool=spool)
        if keep_raw and spool is None:
            out.raw[uid] = raw
    if keep_raw and spool is not None:
        out.raw = SpooledBytes(out.valid)
    return out


def agreed_gather(agreement: SoloAgreement, window: int, fetch: Callable[[bool], WindowPayloads], *,
                  codec: PayloadCodec, version: str, keep_raw: bool, spool: PayloadSpool | None = None,
                  reads: HostReads | None = None) -> WindowPayloads:
    """`fetch(keep_raw)` on process 0, its outcome on every process (one process: just fetch).
    `spool`: this process's own (process 0's `fetch` spools into its own). `reads`: each process
    reads the valid payloads itself (`every_host`); None: process 0 hands on their bytes."""
    if not agreement.multiprocess:
        return fetch(keep_raw)
    if reads is not None:
        return gather_read_everywhere(agreement, window, fetch, codec=codec, version=version, keep_raw=keep_raw,
                                      spool=spool, reads=reads)
    fetched: list[WindowPayloads] = []

    def on_leader() -> bytes:
        fetched.append(fetch(True))
        return encode_gathered(fetched[0])

    data = agreement.blob(f"gather window {window}", on_leader)
    if fetched:
        return _as_kept(fetched[0], keep_raw)
    return decode_gathered(data, codec, version, keep_raw=keep_raw, spool=spool)


def gather_read_everywhere(agreement: SoloAgreement, window: int, fetch: Callable[[bool], WindowPayloads], *,
                           codec: PayloadCodec, version: str, keep_raw: bool, spool: PayloadSpool | None,
                           reads: HostReads) -> WindowPayloads:
    """The `every_host` way (module docstring). Decisions, alike on every process: the header,
    the misses, then one per uid that any process missed (in uid order)."""
    fetched: list[WindowPayloads] = []

    def on_leader() -> dict:
        fetched.append(fetch(True))
        got = fetched[0]
        # one read of each payload, one in memory at a time
        sized = [(len(d), payload_digest(d)) for d in (got.raw[u] for u in sorted(got.valid))]
        return gathered_header(got, [n for n, _ in sized], [h for _, h in sized])

    header = agreement.value(f"gather window {window}", on_leader)
    got = fetched[0] if fetched else outcome_of(header)
    here = None
    if not fetched:
        expected = {u: (s, d) for u, s, d in zip(header["uids"], header["sizes"], header["sha256"])}
        here = read_here(window, expected, reads, codec=codec, version=version, keep_raw=keep_raw, spool=spool)
    reports = agreement.gather_from_all(f"gather window {window} misses", here.missing if here else [],
                                        wait_s=reads.deadline_s + REPORT_MARGIN_S)
    for uid in sorted({u for missed in reports for u in missed}):
        data = agreement.blob(f"gather window {window} uid {uid} from process 0", lambda uid=uid: got.raw[uid])
        if here is not None and uid in here.missing:
            here.payloads[uid] = accept(data, window, uid, codec=codec, version=version, spool=spool)
            if keep_raw and spool is None:
                here.raw[uid] = data
    if here is None:
        return _as_kept(got, keep_raw)
    log.info("window %d: %d payloads read here, process 0's bytes for uids %s", window,
             len(header["uids"]) - len(here.missing), here.missing)
    got.valid = {u: here.payloads[u] for u in header["uids"]}
    if keep_raw:
        got.raw = SpooledBytes(got.valid) if spool is not None else {u: here.raw[u] for u in header["uids"]}
    return got


def _as_kept(got: WindowPayloads, keep_raw: bool) -> WindowPayloads:
    """Process 0's gather as the caller asked for it (it kept the bytes to hand them on)."""
    if not keep_raw:
        got.raw = {}  # a spooled gather's raw is a read-only view of its files
    return got
