"""This neuron's processes: who am I, and starting the multi-process machinery."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import sys
from dataclasses import dataclass

import jax

from templar_jax.multihost.agree import Agreement
from templar_jax.multihost.errors import MultihostError
from templar_jax.multihost.watchdog import Watchdog

log = logging.getLogger(__name__)

_active: Watchdog | None = None  # this process's heartbeat, once start() ran


@dataclass(frozen=True)
class ProcessGroup:
    index: int
    count: int
    host: str

    @property
    def leader(self) -> bool:
        return self.index == 0


def current_group() -> ProcessGroup:
    return ProcessGroup(jax.process_index(), jax.process_count(), socket.gethostname())


def coordination_client():
    """jax.distributed's key-value client (there is no public accessor; multihost_utils uses
    the same one)."""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise MultihostError("jax.distributed is not initialized (call templar_jax.distributed.initialize first)")
    return client


@dataclass
class Multihost:
    group: ProcessGroup
    agreement: Agreement
    watchdog: Watchdog


def start(*, heartbeat_s: float = 2.0, stall_timeout_s: float = 60.0) -> Multihost:
    """The agreement and the heartbeat of this process (jax.distributed must be up). The
    watchdog stops at interpreter exit, before jax.distributed shuts down."""
    group = current_group()
    client = coordination_client()
    agreement = Agreement(client, group.index, group.count)
    watchdog = Watchdog(client, group, lambda: agreement.phase, interval_s=heartbeat_s,
                        timeout_s=stall_timeout_s)
    watchdog.beat_now()  # visible to the others from now on, whatever this process does next
    watchdog.start()
    atexit.register(watchdog.stop)  # runs before jax's own atexit shutdown (registered earlier)
    global _active
    _active = watchdog
    previous = sys.excepthook

    def excepthook(kind, value, tb):
        report_failure(value)
        previous(kind, value, tb)
        end_after_failure()

    sys.excepthook = excepthook
    log.info("multihost: process %d/%d on %s, stall timeout %.0f s", group.index, group.count, group.host,
             stall_timeout_s)
    return Multihost(group, agreement, watchdog)


def end_after_failure() -> None:
    """End this process after an uncaught error, never through jax.distributed's shutdown: its
    barrier waits for every process, and one may be dead (a collective that failed because a peer
    died surfaces here). The watchdog keeps running meanwhile, so when a peer is silent it ends
    this process naming that peer's host and phase; otherwise exit 1 once it could have."""
    if _active is None:
        return
    _active.join(_active.timeout_s + 2 * _active.interval_s)
    sys.stderr.flush()
    os._exit(1)


def report_failure(error: BaseException) -> None:
    """Tell the other processes of this neuron that this one is going down with `error`, so they
    end at once (naming it) instead of after the stall timeout. No-op on one process."""
    if _active is not None:
        _active.report_failure(f"{type(error).__name__}: {error}")
