"""The one exception a payload decoder raises on bad bytes from a peer."""

from __future__ import annotations


class PayloadError(ValueError):
    """A peer's payload failed validation; `reason` names the tensor and the problem.

    Subclasses ValueError so generic callers still catch it, but neurons should catch this type:
    the payload is skipped (scored as invalid), never applied.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
