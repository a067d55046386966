"""This neuron's processes: who am I, and starting the multi-process machinery."""

from __future__ import annotations

import atexit
import logging
import socket
from dataclasses import dataclass

import jax

from templar_jax.multihost.agree import Agreement
from templar_jax.multihost.errors import MultihostError
from templar_jax.multihost.watchdog import Watchdog

log = logging.getLogger(__name__)


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
    agreement = Agreement(client, group.index)
    watchdog = Watchdog(client, group, lambda: agreement.phase, interval_s=heartbeat_s,
                        timeout_s=stall_timeout_s)
    watchdog.beat_now()  # visible to the others from now on, whatever this process does next
    watchdog.start()
    atexit.register(watchdog.stop)  # runs before jax's own atexit shutdown (registered earlier)
    log.info("multihost: process %d/%d on %s, stall timeout %.0f s", group.index, group.count, group.host,
             stall_timeout_s)
    return Multihost(group, agreement, watchdog)
