"""The exceptions the data wing raises on bad input (a shard file, a manifest, a download, a config)."""

from __future__ import annotations


class DataError(Exception):
    """Bad data input; `reason` says exactly what is wrong and where.

    Raised for truncated/corrupt shard files, manifest mismatches, sample-id mismatches,
    out-of-range indices and inconsistent sampler arguments. Callers (miner, validator) may
    catch it and skip the offending input without crashing their loop. The subclasses below
    name the kind of failure for callers that treat them differently.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ManifestError(DataError):
    """`manifest.json` is missing, unreadable, of another format, or inconsistent."""


class HashMismatch(DataError):
    """A file's size or sha256 differs from what the manifest lists (truncated, corrupt, replaced)."""


class ShardFetchError(DataError):
    """A shard set's object could not be read from its bucket (the partial file stays for a resume)."""
