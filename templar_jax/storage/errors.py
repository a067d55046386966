"""Typed storage errors; callers (gather, neurons) turn them into per-peer outcomes."""

from __future__ import annotations


class StorageError(Exception):
    """A storage operation failed; `transient` says whether a retry may help."""

    def __init__(self, reason: str, *, transient: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class ObjectNotFound(StorageError):
    pass


class ObjectTooLarge(StorageError):
    pass


class StorageTimeout(StorageError):
    def __init__(self, reason: str):
        super().__init__(reason, transient=True)


class BadBucketUrl(ValueError):
    """A bucket URL or spec that cannot be opened (config error, not a runtime failure)."""
