"""A heartbeat between the processes of one neuron: when one dies or stalls, every other ends
within `timeout_s` with a message naming both hosts and phases, instead of hanging in a
collective that can never complete.

Each process writes `templar/heartbeat/{index}` = {beat, host, phase} every `interval_s` into
jax.distributed's key-value store and reads the others'. A peer whose beat has not changed
for `timeout_s` (measured on this host's monotonic clock, so host clocks need not agree), or
a store that cannot be reached for as long (process 0, which hosts it, is gone), ends this
process with `os._exit(EXIT_CODE)`: the main thread may be blocked inside a collective and
cannot be interrupted. A process that raises reports it (`report_failure`, called by the entry
point and by an uncaught exception) and the others end at their next beat.
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
        self._halt = threading.Event()
        self.beat = 0
        self.failed: str | None = None

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        start = time.monotonic()
        seen = {q: (None, start) for q in range(self.group.count) if q != self.group.index}
        last: dict[int, dict] = {}
        store_ok = start
        while not self._halt.wait(self.interval_s):
            now = time.monotonic()
            try:
                self.beat_now()
                for q in seen:
                    last[q] = json.loads(self.client.key_value_try_get(f"{KEY}/{q}"))
                    if last[q].get("failed"):  # it raised: no need to wait for its silence
                        self.fail(f"{self.describe(q, last[q])} failed: {last[q]['failed']}")
                        return
                    if last[q]["beat"] != seen[q][0]:
                        seen[q] = (last[q]["beat"], now)
                store_ok = now
                error = ""
            except Exception as err:  # a peer that never beat, or the store (process 0) is gone
                if self._halt.is_set():
                    return
                error = f" ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
            silent = [q for q, (_, t) in seen.items() if now - t > self.timeout_s]
            if silent:
                self.fail("; ".join(f"{self.describe(q, last.get(q))} sent no heartbeat for {now - seen[q][1]:.0f} s"
                                    for q in silent) + error)
            elif now - store_ok > self.timeout_s:
                self.fail(f"the coordination service (process 0) unreachable for {now - store_ok:.0f} s{error}")

    @staticmethod
    def describe(q: int, info: dict | None) -> str:
        if info is None:
            return f"process {q} (never beat)"
        return f"process {q} on {info['host']} (phase {info['phase']!r})"

    def report_failure(self, error: str) -> None:
        """This process is going down with `error`: tell the others at once (their next beat)."""
        self.failed = error
        try:
            self._beat()
        except Exception:  # the store may be gone too; silence then tells the others
            pass

    def beat_now(self) -> None:
        """Publish one heartbeat (start() does this once before the thread runs)."""
        self._beat()

    def _beat(self) -> None:
        self.beat += 1
        info = {"beat": self.beat, "host": self.group.host, "phase": self.phase(), "failed": self.failed}
        self.client.key_value_set(f"{KEY}/{self.group.index}", json.dumps(info), allow_overwrite=True)

    def fail(self, reason: str) -> None:
        message = (f"multihost neuron failed: process {self.group.index}/{self.group.count} on "
                   f"{self.group.host}, phase {self.phase()!r}: {reason}; exiting")
        log.critical(message)
        print(message, file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where this process was
        self._halt.set()
        self._exit(EXIT_CODE)
