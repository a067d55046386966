"""Overlapped outer steps (run config `sparseloco.overlap`; docs/overlap.md).

A miner uploads window W's payload and starts W+1's inner steps at once from its own end-of-W
params x_base, while a comm thread gathers W and computes theta_{W+1} = theta_W - alpha * agg_W
(the same outer step as everyone, so the global model stays bit-identical). `Landing` is the
inner loop's before_step hook: the first time the exchange is done, it moves the working params
onto the new global params keeping the k steps' progress (sparseloco.rebase); at the end of the
window it waits for the exchange if it has not landed yet (lag at most one window).
"""

from __future__ import annotations

import functools
import threading
import time

import jax

from templar_jax.model.offload import to_device
from templar_jax.neurons.window_state import Exchanged, Pending
from templar_jax.sparseloco import rebase


class Landing:
    """Lands `pending`'s outer step on the working params between inner steps."""

    def __init__(self, pending: Pending):
        self.pending = pending
        self.exchanged: Exchanged | None = None
        self.after_steps = 0  # inner steps taken before it landed (k)
        self.seconds = 0.0  # time the training thread spent on it (waiting + rebase), clock waits excluded
        self.span: tuple[float, float] | None = None  # (start, end) of that time
        self._calls = 0

    def __call__(self, x):
        """before_step: rebase once the exchange is done, else train on."""
        if self.exchanged is None and self.pending.future.done():
            x = self._land(x)
        self._calls += 1
        return x

    def finish(self, x):
        """After the window's last step: wait for the exchange if needed, then rebase."""
        return x if self.exchanged is not None else self._land(x)

    @property
    def landed(self) -> bool:
        return self.exchanged is not None

    def _land(self, x):
        t0 = time.time()
        self.exchanged = self.pending.future.result()  # raises what the comm thread raised
        got = time.time()
        self.after_steps = self._calls
        x = jax.block_until_ready(rebase(to_device(self.exchanged.params), x, to_device(self.pending.x_base)))
        self.span = (t0, time.time())
        # while the comm thread waited for the gather time, the window's uploads were still open:
        # that part of our wait is the clock's (the synchronous loop does not count it either)
        wait_start, wait_end = self.exchanged.clock_wait
        clock = max(0.0, min(got, wait_end) - max(t0, wait_start))
        self.seconds = self.span[1] - t0 - clock
        return x


class SerialChain:
    """The chain with its calls made one at a time. The overlapped miner reads the chain from two
    threads at once (the training thread's clock; the comm thread's clock, metagraph and
    commitments), and a BittensorChain is one connection with unlocked caches and reconnects.
    Everything else (hotkey, blocks_per_window, ...) reads through."""

    def __init__(self, inner):
        self._inner, self._lock = inner, threading.RLock()

    def __getattr__(self, name: str):
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def serial(*args, **kwargs):
            with self._lock:
                return attr(*args, **kwargs)

        return serial
