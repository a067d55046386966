"""Validation of the small metadata object carried in a payload header."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from templar_jax.wire.errors import PayloadError

MAX_META_KEYS = 32
MAX_KEY_CHARS = 64
MAX_STR_CHARS = 256
# Known keys and their required types (ints must be >= 0).
INT_KEYS = ("window", "uid", "global_step", "sample_count")
STR_KEYS = ("sample_digest", "version")


def check_meta(meta: Any, *, error: type[Exception] = PayloadError) -> dict[str, Any]:
    """Return meta as a plain dict of JSON scalars, or raise `error` naming the bad entry."""
    if not isinstance(meta, Mapping):
        raise error(f"meta must be an object, got {type(meta).__name__}")
    if len(meta) > MAX_META_KEYS:
        raise error(f"meta has {len(meta)} keys, more than {MAX_META_KEYS}")
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_CHARS:
            raise error(f"meta key {str(key)[:80]!r} is not a short string")
        if isinstance(value, str):
            if len(value) > MAX_STR_CHARS:
                raise error(f"meta {key} longer than {MAX_STR_CHARS} chars")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise error(f"meta {key} is not finite")
        elif not (value is None or isinstance(value, (bool, int))):
            raise error(f"meta {key} has unsupported type {type(value).__name__}")
        if key in INT_KEYS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise error(f"meta {key} must be a non-negative integer, got {value!r}")
        if key in STR_KEYS and not isinstance(value, str):
            raise error(f"meta {key} must be a string, got {value!r}")
        out[key] = value
    return out


def check_expected_meta(meta: Mapping[str, Any], expected_meta: Mapping[str, Any] | None) -> None:
    """Require meta[key] == value for each given key (e.g. the window and uid we asked for)."""
    for key, want in (expected_meta or {}).items():
        if key not in meta:
            raise PayloadError(f"meta {key} missing (expected {want!r})")
        if meta[key] != want or type(meta[key]) is not type(want):
            raise PayloadError(f"meta {key} is {meta[key]!r}, expected {want!r}")
