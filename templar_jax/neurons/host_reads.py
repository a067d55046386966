"""Gathered payloads read by a process of a multi-process neuron itself (run config
`multihost.payload_reads: every_host`), instead of received from process 0 through the
coordination service: process 0 decides which payloads are valid and hands on their size and
sha256; each other process downloads those from the peers' buckets (its own handle to each,
`multihost.local_bucket`), keeps the ones whose bytes are process 0's and names the others
(`missing`: unreadable, late, overwritten since) for process 0 to send (`neurons.agreed_gather`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Mapping

from templar_jax.multihost.bucket import local_bucket
from templar_jax.neurons.exchange import accept
from templar_jax.neurons.spool import PayloadSpool
from templar_jax.protocol.codec import PayloadCodec
from templar_jax.sparseloco import Payload
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.gather import GatherStatus, PeerOutcome, PeerSource, gather

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostReads:
    """What a process needs to read the payloads itself: the peers' buckets (uid -> Bucket, as
    the gather got them), the gather's deadline and how many downloads run at once."""

    buckets: Mapping[int, Bucket]
    deadline_s: float
    in_flight: int


@dataclass
class ReadHere:
    """This process's own reads: decoded (or spooled) payloads, their bytes (`keep_raw` without a
    spool) and the uids it could not read as process 0 did, in uid order."""

    payloads: dict[int, Payload] = field(default_factory=dict)
    raw: dict[int, bytes] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


def payload_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_here(window: int, expected: Mapping[int, tuple[int, str]], reads: HostReads, *, codec: PayloadCodec,
              version: str, keep_raw: bool, spool: PayloadSpool | None) -> ReadHere:
    """Each of `expected`'s payloads (uid -> (size, sha256)) downloaded here; kept where the bytes
    are process 0's. Never raises for a peer: whatever fails is `missing`."""
    out = ReadHere()
    sources = []
    for uid in sorted(expected):
        try:
            sources.append(PeerSource(uid, local_bucket(reads.buckets[uid])))
        except Exception as err:  # no handle here: process 0's bytes will do
            log.warning("window %d uid %d: cannot open the bucket here (%s: %s)", window, uid, type(err).__name__, err)

    def check(oc: PeerOutcome) -> PeerOutcome:
        size, digest = expected[oc.uid]
        if len(oc.data) != size or payload_digest(oc.data) != digest:
            return oc._replace(status=GatherStatus.ERROR, data=None, reason="not the bytes process 0 read")
        out.payloads[oc.uid] = accept(oc.data, window, oc.uid, codec=codec, version=version, spool=spool)
        if keep_raw and spool is None:
            out.raw[oc.uid] = oc.data
        return oc._replace(data=None)

    # validity and timing were judged on process 0: no upload window here, only its bytes count
    outcomes = gather(sources, window, reads.deadline_s, version=version, max_bytes=codec.max_bytes,
                      upload_window=None, max_concurrency=reads.in_flight, consume=check)
    for oc in outcomes:
        if not oc.ok:
            log.warning("window %d uid %d: read here failed (%s: %s); taking process 0's bytes", window, oc.uid,
                        oc.status.value, oc.reason)
    read = {oc.uid for oc in outcomes if oc.ok}
    out.missing = sorted(u for u in expected if u not in read)
    return out
