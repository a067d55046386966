"""The one exception the data wing raises on bad input (a shard file, a manifest, a config)."""

from __future__ import annotations


class DataError(Exception):
    """Bad data input; `reason` says exactly what is wrong and where.

    Raised for truncated/corrupt shard files, manifest mismatches, sample-id mismatches,
    out-of-range indices and inconsistent sampler arguments. Callers (miner, validator) may
    catch it and skip the offending input without crashing their loop.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
