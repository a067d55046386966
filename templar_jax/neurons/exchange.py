"""One window's exchange, shared by miners and validators: gathering the peers' payloads,
validating them, and which of them count (the leader's peer list with reserve fill-in).

Determinism matters: every honest neuron must aggregate the same payloads, so gathering starts
only after the upload window closed, validity depends only on the bytes and the storage
timestamps, and peers are taken in uid order.

Memory: a miner keeps its few gather peers' payloads decoded in memory. The validator gathers
every miner, so it passes a `PayloadSpool`: each payload is decoded (checked) as its download
completes, written to local disk and dropped, and `valid` then holds `SpooledPayload`s that
decode one tensor at a time; at most `in_flight` payloads are in memory during the gather.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from templar_jax.protocol.codec import PayloadCodec
from templar_jax.protocol.leader import PeerList
from templar_jax.sparseloco import Payload
from templar_jax.storage.bucket import Bucket
from templar_jax.neurons.spool import PayloadSpool, SpooledBytes
from templar_jax.storage.gather import GatherStatus, PeerOutcome, PeerSource, gather
from templar_jax.storage.timing import UploadWindow
from templar_jax.wire import PayloadError

log = logging.getLogger(__name__)


@dataclass
class WindowPayloads:
    """Outcome of gathering one window: valid payloads and why the others were dropped."""

    window: int
    valid: dict[int, Payload] = field(default_factory=dict)  # SpooledPayload values with a spool
    stored_at: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # uid -> reason
    invalid: set[int] = field(default_factory=set)  # failed because the bytes were bad
    raw: Mapping[int, bytes] = field(default_factory=dict)  # read from the spool's files with a spool


def gather_window(
    window: int,
    uids: Sequence[int],
    buckets: Mapping[int, Bucket],
    *,
    upload: UploadWindow,
    version: str,
    codec: PayloadCodec,
    deadline_s: float,
    keep_raw: bool = False,
    spool: PayloadSpool | None = None,
    in_flight: int = 32,
) -> WindowPayloads:
    """Fetch and validate `uids`' payloads for `window`; only objects the bucket stamped inside
    `upload` count. Never raises for a bad peer. `keep_raw`: keep the accepted bytes too (with
    a spool, `raw` reads them back from disk). `in_flight`: peers downloaded at once."""
    out = WindowPayloads(window)
    sources = []
    for uid in sorted(set(uids)):
        if uid in buckets:
            sources.append(PeerSource(uid, buckets[uid]))
        else:
            out.failed[uid] = "no usable bucket commitment"
    decoded: dict[int, Payload | PayloadError] = {}

    def check(oc: PeerOutcome) -> PeerOutcome:
        """Decode as the download completes; with a spool, keep the bytes on disk only."""
        try:
            decoded[oc.uid] = accept(oc.data, window, oc.uid, codec=codec, version=version, spool=spool)
        except PayloadError as err:
            decoded[oc.uid] = err
        except OSError as err:  # the spool: our disk, not the peer's fault: raised below, after the gather
            spool_errors.append(err)
        return oc if keep_raw and spool is None else oc._replace(data=None)

    spool_errors: list[OSError] = []
    outcomes = gather(sources, window, deadline_s, version=version, max_bytes=codec.max_bytes,
                      upload_window=upload, max_concurrency=in_flight, consume=check)
    if spool_errors:
        # a payload that could not be spooled must not make its peer count as missing (and be
        # slashed for it): the window fails instead
        raise spool_errors[0]
    for oc in outcomes:  # uid order, whatever order the downloads finished in
        if oc.status is not GatherStatus.OK:
            out.failed[oc.uid] = f"{oc.status.value}: {oc.reason}" if oc.reason else oc.status.value
            continue
        result = decoded[oc.uid]
        if isinstance(result, PayloadError):
            out.failed[oc.uid] = f"invalid: {result}"
            out.invalid.add(oc.uid)
            continue
        out.valid[oc.uid] = result
        out.stored_at[oc.uid] = oc.stored_at or 0.0
        if keep_raw and spool is None:
            out.raw[oc.uid] = oc.data
    if keep_raw and spool is not None:
        out.raw = SpooledBytes(out.valid)
    return out


def accept(data: bytes, window: int, uid: int, *, codec: PayloadCodec, version: str,
           spool: PayloadSpool | None) -> Payload:
    """A payload's bytes decoded and checked against (window, uid, version) (PayloadError
    otherwise); with a spool, kept on disk (OSError from the spool) and decoded lazily from there."""
    payload, _ = codec.decode(data, expected_meta={"window": window, "uid": uid, "version": version})
    return payload if spool is None else spool.put(window, uid, data, tuple(payload))


def select_contributors(peers: PeerList, valid: Mapping[int, Any]) -> list[int]:
    """Gather peers with a valid payload; a missing one is replaced by reserves in list order."""
    chosen = [u for u in peers.gather if u in valid]
    missing = len(peers.gather) - len(chosen)
    for u in peers.reserve:
        if missing <= 0:
            break
        if u in valid and u not in chosen:
            chosen.append(u)
            missing -= 1
    return sorted(chosen)
