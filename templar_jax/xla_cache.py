"""Persistent XLA compilation cache, so neurons that compile the same programs (every miner of
a run, or a restarted neuron) load them from disk instead of compiling again."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    env = os.environ.get("TEMPLAR_JAX_XLA_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("TEMPLAR_JAX_CACHE", Path.home() / ".cache" / "templar-jax")) / "xla"


def enable_compilation_cache(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Turn the cache on (every compiled program is kept); TEMPLAR_JAX_XLA_CACHE=off disables it."""
    if os.environ.get("TEMPLAR_JAX_XLA_CACHE", "").lower() in ("off", "0", "none"):
        return None
    import jax

    path = Path(cache_dir) if cache_dir else default_cache_dir()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
