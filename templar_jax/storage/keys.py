"""Every object key of SPEC sec. 3 in one place (the version string partitions runs)."""

from __future__ import annotations

import re

from templar_jax.storage.errors import StorageError


class BadKey(ValueError):
    """A key that does not follow the naming scheme."""


def _check(version: str) -> str:
    if not version or "/" in version or any(c.isspace() for c in version):
        raise BadKey(f"version {version!r} must be non-empty, without '/' or spaces")
    return version


def _nonneg(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadKey(f"{name} must be a non-negative int, got {value!r}")
    return value


def gradient_key(window: int, uid: int, version: str) -> str:
    return f"gradient-{_nonneg('window', window)}-{_nonneg('uid', uid)}-v{_check(version)}"


def debug_key(window: int, uid: int, version: str) -> str:
    return f"debug-{_nonneg('window', window)}-{_nonneg('uid', uid)}-v{_check(version)}"


def peers_key(first_effective_window: int, version: str) -> str:
    return f"peers_{_nonneg('window', first_effective_window)}_v{_check(version)}.json"


def start_window_key(version: str) -> str:
    return f"start_window_v{_check(version)}.json"


def aggregator_key(window: int, version: str) -> str:
    return f"aggregator-{_nonneg('window', window)}-v{_check(version)}"


def checkpoint_prefix(version: str, window: int) -> str:
    return f"checkpoints/{_check(version)}/{_nonneg('window', window)}/"


def checkpoint_latest_key(version: str) -> str:
    return f"checkpoints/{_check(version)}/_LATEST.json"


_GRADIENT = re.compile(r"gradient-(\d+)-(\d+)-v(\S+)")
_PEERS = re.compile(r"peers_(\d+)_v(\S+)\.json")


def parse_gradient_key(key: str) -> tuple[int, int, str]:
    """(window, uid, version) of a gradient key, or BadKey."""
    m = _GRADIENT.fullmatch(key)
    if not m:
        raise BadKey(f"not a gradient key: {key[:120]!r}")
    return int(m.group(1)), int(m.group(2)), m.group(3)


def parse_peers_key(key: str) -> tuple[int, str]:
    m = _PEERS.fullmatch(key)
    if not m:
        raise BadKey(f"not a peers key: {key[:120]!r}")
    return int(m.group(1)), m.group(2)


class KeyOutsideBucket(BadKey, StorageError):
    """A key that could address something outside the bucket (or its prefix): a storage error
    that is never retried."""

    def __init__(self, reason: str):
        StorageError.__init__(self, reason)


def check_object_key(key: str, *, prefix: bool = False) -> str:
    """`key` if it stays inside the bucket on every backend: no leading "/", no "." or ".."
    segment (a file bucket's path join, or an HTTP layer that normalizes dot segments, would
    leave the bucket root), no empty segment, no NUL. `prefix`: a list prefix, which may be
    empty or end in "/"."""
    if not isinstance(key, str):
        raise KeyOutsideBucket(f"key {key!r} is not a string")
    body = key[:-1] if prefix and key.endswith("/") else key
    if not body and prefix:
        return key
    parts = body.split("/")
    if not body or "\0" in body or any(p in ("", ".", "..") for p in parts):
        raise KeyOutsideBucket(f"key {key[:120]!r} is not confined to the bucket")
    return key
