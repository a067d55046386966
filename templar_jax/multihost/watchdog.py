"""A heartbeat between the processes of one neuron: when one dies or stalls, every other ends
within `timeout_s` with a message naming both hosts and phases, instead of hanging in a
collective that can never complete.

Each process writes `templar/heartbeat/{index}` = {beat, host, phase} every `interval_s` into
jax.distributed's key-value store and reads the others'. A peer whose beat has not changed
for `timeout_s` (measured on this host's monotonic clock, so host clocks need not agree), or
a store that cannot be reached for as long (process 0, which hosts it, is gone), ends this
process with `os._exit(EXIT_CODE)`: the main thread may be blocked inside a collective and
cannot be interrupted.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import sys
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

EXIT_CODE = 70
KEY = "templar/heartbeat"


class Watchdog(threading.Thread):
    def __init__(self, client, group, phase: Callable[[], str], *, interval_s: float = 2.0,
                 timeout_s: float = 60.0, exit: Callable[[int], None] = os._exit):
        super().__init__(name="templar-multihost-watchdog", daemon=True)
        self.client, self.group, self.phase = client, group, phase
        self.interval_s, self.timeout_s = float(interval_s), float(timeout_s)
        self._exit = exit
        self._stop = threading.Event()
        self.beat = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        start = time.monotonic()
        seen = {q: (None, start) for q in range(self.group.count) if q != self.group.index}
        store_ok = start
        while not self._stop.wait(self.interval_s):
            now = time.monotonic()
            try:
                self._beat()
                for q in seen:
                    raw = self.client.key_value_try_get(f"{KEY}/{q}")
                    info = json.loads(raw)
                    if info["beat"] != seen[q][0]:
                        seen[q] = (info["beat"], now)
                    elif now - seen[q][1] > self.timeout_s:
                        self.fail(f"process {q} on {info['host']} (phase {info['phase']!r}) sent no "
                                  f"heartbeat for {now - seen[q][1]:.0f} s")
                store_ok = now
            except Exception as err:  # no heartbeat yet, or the store (process 0) is gone
                if self._stop.is_set():
                    return
                missing = [q for q, (beat, t) in seen.items() if now - t > self.timeout_s]
                if missing or now - store_ok > self.timeout_s:
                    self.fail(f"no heartbeat from process(es) {missing or sorted(seen)} for "
                              f"{self.timeout_s:.0f} s ({type(err).__name__}: {str(err)[:200]})")

    def _beat(self) -> None:
        self.beat += 1
        info = {"beat": self.beat, "host": self.group.host, "phase": self.phase()}
        self.client.key_value_set(f"{KEY}/{self.group.index}", json.dumps(info), allow_overwrite=True)

    def fail(self, reason: str) -> None:
        message = (f"multihost neuron failed: process {self.group.index}/{self.group.count} on "
                   f"{self.group.host}, phase {self.phase()!r}: {reason}; exiting")
        log.critical(message)
        print(message, file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where this process was
        self._stop.set()
        self._exit(EXIT_CODE)
