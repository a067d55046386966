"""Waiting on the chain's clock: window boundaries and wall-clock deadlines derived from blocks."""

from __future__ import annotations

import time

from templar_jax.chain import Chain


def first_block(chain: Chain, window: int) -> int:
    return window * chain.blocks_per_window


def window_start_time(chain: Chain, window: int) -> float:
    return chain.block_timestamp(first_block(chain, window))


def wait_for_window(chain: Chain, window: int, *, poll_s: float = 0.1) -> None:
    """Block until the chain reaches the first block of `window` (and its timestamp has passed)."""
    target = first_block(chain, window)
    while chain.current_block() < target:
        time.sleep(poll_s)
    wait_until(window_start_time(chain, window))


def wait_until(t: float, *, poll_s: float = 0.05) -> None:
    while True:
        now = time.time()
        if now >= t:
            return
        time.sleep(min(poll_s * 4, t - now))
