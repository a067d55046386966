"""Fetch many peers' objects for one window concurrently; one outcome per peer, never a raise.

Per peer: metadata first (exists? size under the cap? stored inside the upload window?), then
the bytes, all under one deadline for the whole gather. A slow, missing, early, late, oversized
or failing peer only affects its own outcome.

With `consume`, each downloaded outcome is handed to it (on a worker thread) while its peer's
slot is still held, and the outcome it returns (typically without the bytes) is kept: at most
`max_concurrency` peers' bytes are in memory at once, whatever the number of peers.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

from templar_jax.storage.bucket import Bucket
from templar_jax.storage.errors import ObjectNotFound, ObjectTooLarge, StorageError
from templar_jax.storage.keys import gradient_key
from templar_jax.storage.sync import run_sync
from templar_jax.storage.timing import TimeStatus, UploadWindow, check_upload_time

log = logging.getLogger(__name__)


class GatherStatus(enum.Enum):
    OK = "ok"
    MISSING = "missing"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    TOO_BIG = "too_big"
    TIMEOUT = "timeout"
    ERROR = "error"


class PeerSource(NamedTuple):
    uid: int
    bucket: Bucket


class PeerOutcome(NamedTuple):
    uid: int
    status: GatherStatus
    data: bytes | None = None
    reason: str = ""
    stored_at: float | None = None
    size: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is GatherStatus.OK


_TIME_TO_GATHER = {TimeStatus.TOO_EARLY: GatherStatus.TOO_EARLY, TimeStatus.TOO_LATE: GatherStatus.TOO_LATE}


async def fetch_one(
    peer: PeerSource, key: str, *, max_bytes: int, upload_window: UploadWindow | None,
) -> PeerOutcome:
    """One peer, no deadline of its own (gather applies it)."""
    start = time.monotonic()

    def done(status: GatherStatus, reason: str = "", **kw) -> PeerOutcome:
        return PeerOutcome(peer.uid, status, reason=reason, seconds=time.monotonic() - start, **kw)

    try:
        info = await peer.bucket.ahead(key)
        if info is None:
            return done(GatherStatus.MISSING, f"{key} not found")
        if upload_window is not None:
            status = check_upload_time(info.stored_at, upload_window)
            if status is not TimeStatus.OK:
                return done(_TIME_TO_GATHER[status], f"{key} stored at {info.stored_at:.1f}, window "
                            f"[{upload_window.start:.1f}, {upload_window.end:.1f}]", stored_at=info.stored_at)
        if info.size > max_bytes:
            return done(GatherStatus.TOO_BIG, f"{key} is {info.size} bytes, cap {max_bytes}", size=info.size)
        data = await peer.bucket.aget_range(key, 0, info.size) if info.size else b""
        return done(GatherStatus.OK, data=data, stored_at=info.stored_at, size=info.size)
    except ObjectNotFound as e:
        return done(GatherStatus.MISSING, e.reason)
    except ObjectTooLarge as e:
        return done(GatherStatus.TOO_BIG, e.reason)
    except StorageError as e:
        return done(GatherStatus.ERROR, e.reason)
    except Exception as e:  # a bug or an unexpected library error must not sink the others
        log.exception("unexpected error fetching uid %s", peer.uid)
        return done(GatherStatus.ERROR, f"{type(e).__name__}: {e}")


async def agather(
    peers: Sequence[PeerSource], window: int, deadline_s: float, *, version: str, max_bytes: int,
    upload_window: UploadWindow | None = None, max_concurrency: int = 32,
    key_fn: Callable[[int, int, str], str] = gradient_key,
    consume: Callable[[PeerOutcome], PeerOutcome] | None = None,
) -> list[PeerOutcome]:
    """Outcomes in `peers` order. `deadline_s`: seconds from now for the whole gather (SPEC:
    90 s per peer, all peers in parallel); a peer not done by then is TIMEOUT. `consume`: see
    the module doc; its time counts against the deadline of peers still waiting for a slot."""
    sem = asyncio.Semaphore(max_concurrency)
    start = time.monotonic()

    async def one(peer: PeerSource) -> PeerOutcome:
        async with sem:
            remaining = deadline_s - (time.monotonic() - start)
            try:
                if remaining <= 0:
                    raise asyncio.TimeoutError
                outcome = await asyncio.wait_for(
                    fetch_one(peer, key_fn(window, peer.uid, version), max_bytes=max_bytes,
                              upload_window=upload_window), remaining)
            except (TimeoutError, asyncio.TimeoutError):
                return PeerOutcome(peer.uid, GatherStatus.TIMEOUT, reason=f"not done within {deadline_s:.1f} s",
                                   seconds=time.monotonic() - start)
            if consume is None or not outcome.ok:
                return outcome
            try:
                return await asyncio.to_thread(consume, outcome)
            except Exception as e:  # a consumer's bug must not sink the other peers
                log.exception("consuming uid %s's object failed", peer.uid)
                return outcome._replace(status=GatherStatus.ERROR, data=None, reason=f"{type(e).__name__}: {e}")

    outcomes = await asyncio.gather(*(one(p) for p in peers))
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status.value] = counts.get(o.status.value, 0) + 1
    log.info("gather window %d: %s in %.2f s", window, counts, time.monotonic() - start)
    return list(outcomes)


def gather(peers: Sequence[PeerSource], window: int, deadline_s: float, **kwargs) -> list[PeerOutcome]:
    """Sync wrapper of agather (do not call from inside a running event loop)."""
    return run_sync(agather(peers, window, deadline_s, **kwargs))
