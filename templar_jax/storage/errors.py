"""Typed storage errors; callers (gather, neurons) turn them into per-peer outcomes."""

from __future__ import annotations

import urllib.error


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


def http_error(what: str, e: Exception) -> StorageError:
    """A urllib failure as a typed error: timeouts, 5xx, 429 and connection errors may pass on retry."""
    if isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError):
        return StorageTimeout(f"{what}: no answer in time")
    if isinstance(e, urllib.error.HTTPError):
        return StorageError(f"{what}: HTTP {e.code}", transient=e.code >= 500 or e.code == 429)
    return StorageError(f"{what}: {type(e).__name__}: {e}", transient=True)
