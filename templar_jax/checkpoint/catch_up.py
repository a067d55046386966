"""Late-joiner bootstrap: replay the outer updates a node missed.

A node that restores a checkpoint taken at window `start_window` is behind the
network by every outer step applied since. Each of those steps is a pure
function of the params and that window's aggregated update (the leader
validator publishes it as `aggregator-{window}-v{version}`), so replaying them
in window order reproduces the live params bit for bit. Windows whose update
cannot be fetched (never published, pruned, corrupt) are skipped and counted;
the caller decides whether too many skips mean "fetch a newer checkpoint".
"""

from __future__ import annotations

import logging
from typing import Any, Callable, NamedTuple, Optional

PyTree = Any

log = logging.getLogger(__name__)


class CatchUpResult(NamedTuple):
    """What `catch_up` did: the params after replay and which windows it used."""

    params: PyTree
    applied: list[int]
    skipped: list[int]


def catch_up(
    params: PyTree,
    start_window: int,
    current_window: int,
    fetch_update: Callable[[int], Optional[PyTree]],
    apply_update: Callable[[PyTree, PyTree], PyTree],
) -> CatchUpResult:
    """Apply the updates of windows `start_window .. current_window - 1` in order.

    `start_window` is the first window whose update is NOT yet in `params` (for a
    checkpoint saved after window w's outer step, pass w + 1). `current_window`
    is exclusive: its update does not exist yet while that window is running.

    `fetch_update(window)` returns that window's update tree, or None when it is
    unavailable; it may also raise `LookupError`/`ValueError` for a missing or
    bad object, which is treated as a skip (a corrupt object must not stop a
    bootstrap). `apply_update(params, update)` is the same outer step the live
    network runs (e.g. `theta - alpha * agg`).

    Returns `CatchUpResult(params, applied, skipped)` with window numbers, so
    `len(applied)` / `len(skipped)` are the counts.
    """
    if current_window < start_window:
        raise ValueError(
            f"current_window {current_window} is before start_window {start_window}"
        )
    applied: list[int] = []
    skipped: list[int] = []
    for window in range(start_window, current_window):
        try:
            update = fetch_update(window)
        except (LookupError, ValueError) as err:
            log.warning("catch-up: window %d update unusable (%s); skipping", window, err)
            update = None
        if update is None:
            skipped.append(window)
            continue
        params = apply_update(params, update)
        applied.append(window)
    log.info(
        "catch-up windows [%d, %d): applied %d, skipped %d",
        start_window, current_window, len(applied), len(skipped),
    )
    return CatchUpResult(params, applied, skipped)
