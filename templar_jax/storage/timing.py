"""Upload time-window validation from an object's storage timestamp (SPEC sec. 1).

A payload for window W counts only if the bucket stamped it within
[timestamp(first block of W+1) - early_slack, that + late_grace]; the chain gives the block
timestamp, the storage backend gives the object time (see storage.metadata), so neither peer
controls the clock that decides.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

DEFAULT_LATE_GRACE_S = 70.0
DEFAULT_EARLY_SLACK_S = 0.0


class TimeStatus(enum.Enum):
    OK = "ok"
    TOO_EARLY = "too_early"
    TOO_LATE = "too_late"
    NOT_FOUND = "not_found"


class UploadWindow(NamedTuple):
    start: float  # unix seconds, inclusive
    end: float  # unix seconds, inclusive

    @classmethod
    def after_block(
        cls, next_window_first_block_ts: float, *, late_grace_s: float = DEFAULT_LATE_GRACE_S,
        early_slack_s: float = DEFAULT_EARLY_SLACK_S,
    ) -> UploadWindow:
        """Bounds for window W from the timestamp of the first block of W+1."""
        return cls(next_window_first_block_ts - early_slack_s, next_window_first_block_ts + late_grace_s)


def check_upload_time(stored_at: float | None, window: UploadWindow) -> TimeStatus:
    if stored_at is None:
        return TimeStatus.NOT_FOUND
    if stored_at < window.start:
        return TimeStatus.TOO_EARLY
    if stored_at > window.end:
        return TimeStatus.TOO_LATE
    return TimeStatus.OK
