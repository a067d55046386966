"""The window's phases and their deadlines, from the chain's block timestamps (SPEC sec. 1).

For window W, with t(W) the timestamp of W's first block:

    t(W)                      train: inner steps from theta0
    t(W+1) - train_margin_s   train deadline: the last inner step ends (compress + encode fit after)
    t(W+1)                    upload opens: the payload of W is put in the miner's bucket
    t(W+1) + upload_span_s    upload closes: a later storage timestamp does not count
    ... + gather_margin_s     gather: every valid upload is visible; then aggregate and apply

Miners and validators read the same phases from one `WindowClock`, so they gather the same
payloads. Times are unix seconds; every wait polls the chain, never a local timer alone.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

from templar_jax.chain import Chain
from templar_jax.protocol.timing import GATHER_MARGIN_S, TRAIN_MARGIN_S
from templar_jax.storage.timing import UploadWindow


class WindowPhases(NamedTuple):
    window: int
    start: float
    train_deadline: float
    upload_open: float
    upload_close: float
    gather_at: float

    @property
    def upload_window(self) -> UploadWindow:
        """The storage-timestamp bounds an upload for this window must fall in."""
        return UploadWindow(self.upload_open, self.upload_close)


def wait_until(t: float, *, poll_s: float = 0.05) -> None:
    while True:
        now = time.time()
        if now >= t:
            return
        time.sleep(min(poll_s * 4, t - now))


class WindowClock:
    """Window numbers and phase times of a run on `chain` (see the module docstring)."""

    def __init__(self, chain: Chain, *, upload_span_s: float, train_margin_s: float = TRAIN_MARGIN_S,
                 gather_margin_s: float = GATHER_MARGIN_S, poll_s: float = 0.1,
                 now: Callable[[], float] = time.time):
        self.chain = chain
        self.now = now  # the clock a deadline is judged by (process 0's on a multi-process neuron)
        self.upload_span_s = float(upload_span_s)
        self.train_margin_s = float(train_margin_s)
        self.gather_margin_s = float(gather_margin_s)
        self.poll_s = poll_s

    def current_window(self) -> int:
        return self.chain.current_window()

    def first_block(self, window: int) -> int:
        return window * self.chain.blocks_per_window

    def start_time(self, window: int) -> float:
        return self.chain.block_timestamp(self.first_block(window))

    def phases(self, window: int) -> WindowPhases:
        start, end = self.start_time(window), self.start_time(window + 1)
        close = end + self.upload_span_s
        return WindowPhases(window, start, end - self.train_margin_s, end, close, close + self.gather_margin_s)

    def train_deadline(self, window: int) -> float:
        return self.phases(window).train_deadline

    def upload_window(self, window: int) -> UploadWindow:
        return self.phases(window).upload_window

    def wait_for_window(self, window: int) -> None:
        """Block until the chain reaches the first block of `window` and its timestamp passed."""
        target = self.first_block(window)
        while self.chain.current_block() < target:
            time.sleep(self.poll_s)
        wait_until(self.start_time(window))

    def wait_for_upload(self, window: int) -> None:
        """Until the upload of `window`'s payload opens (= `window + 1` begins)."""
        self.wait_for_window(window + 1)

    def wait_for_gather(self, window: int) -> None:
        wait_until(self.phases(window).gather_at)

