"""Sync score: how many outer steps a miner's model lags the validator's.

Miners publish a "debug" object: the values of a few parameters at fixed positions. The validator
keeps the same sample of its own model each window and an EMA of the per-step absolute change of
each sampled element. For a miner:

    x_i  = |theta_val_i - theta_miner_i| / max(ema_i, floor)        (steps behind, per element)
    x    = robust mean of x_i  (median by default; "trimmed_mean" cuts 10% from each end)
    sync = max(0, 1 - min(x, 3) / 3) ** 2.5

The median is used because a handful of elements with a tiny EMA (a parameter that barely moved)
would otherwise dominate a plain mean. Positions are chosen from the parameter table alone
(flat name -> shape) and a seed, so validator and miners derive the same positions without
exchanging them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Mapping, Sequence

import numpy as np

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.gauntlet.state import ValidatorState

DEBUG_VERSION = 1


def choose_sample_positions(
    param_table: Mapping[str, Sequence[int]], cfg: GauntletConfig
) -> dict[str, np.ndarray]:
    """Flat element positions to sample, per parameter (sorted names, sorted int64 positions).

    Each tensor gets min(sync_samples_per_tensor, size) distinct positions from a generator seeded
    by blake2b(seed, name), so the choice for one tensor does not depend on which other tensors
    exist or on dict order.
    """
    positions: dict[str, np.ndarray] = {}
    for name in sorted(param_table):
        size = int(np.prod([int(d) for d in param_table[name]], dtype=np.int64))
        count = min(cfg.sync_samples_per_tensor, size)
        digest = hashlib.blake2b(f"{cfg.sync_sample_seed}/{name}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        chosen = rng.choice(size, size=count, replace=False) if count else np.zeros(0, np.int64)
        positions[name] = np.sort(chosen.astype(np.int64))
    return positions


def sample_params(params_flat: Mapping[str, Any], positions: Mapping[str, np.ndarray]) -> np.ndarray:
    """Gather the sampled values (float64, names in sorted order, positions in given order).

    Indexes each array at the unravelled positions, so for a jax array only those few elements
    reach the host (no full-tensor copy of a 72B model).
    """
    parts = []
    for name in sorted(positions):
        if name not in params_flat:
            raise ScoreInputError(f"parameter {name!r} missing from params")
        arr = params_flat[name]
        coords = np.unravel_index(positions[name], tuple(arr.shape))
        parts.append(np.asarray(arr[coords], dtype=np.float64).reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0, np.float64)


def debug_object(
    params_flat: Mapping[str, Any], positions: Mapping[str, np.ndarray], window: int
) -> dict[str, Any]:
    """The JSON-able "debug" object a miner publishes: sampled values keyed by parameter name."""
    values = {}
    for name in sorted(positions):
        one = sample_params({name: params_flat[name]} if name in params_flat else {}, {name: positions[name]})
        values[name] = [float(v) for v in one]
    return {"version": DEBUG_VERSION, "window": int(window), "values": values}


def parse_debug_object(obj: Any, positions: Mapping[str, np.ndarray]) -> np.ndarray:
    """A peer's debug object -> float64 sample aligned with sample_params; ScoreInputError if bad."""
    if not isinstance(obj, dict) or obj.get("version") != DEBUG_VERSION:
        raise ScoreInputError("debug object: not an object of the expected version")
    values = obj.get("values")
    if not isinstance(values, dict):
        raise ScoreInputError("debug object: 'values' must be an object")
    parts = []
    for name in sorted(positions):
        got = values.get(name)
        want = len(positions[name])
        if not isinstance(got, list) or len(got) != want:
            raise ScoreInputError(f"debug object: {name!r} must hold {want} numbers")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in got):
            raise ScoreInputError(f"debug object: {name!r} holds a non-number")
        parts.append(np.asarray(got, dtype=np.float64))
    sample = np.concatenate(parts) if parts else np.zeros(0, np.float64)
    if not np.all(np.isfinite(sample)):
        raise ScoreInputError("debug object: non-finite value")
    return sample


def update_change_ema(
    prev_sample: np.ndarray | None,
    new_sample: np.ndarray,
    ema: np.ndarray | None,
    cfg: GauntletConfig,
) -> np.ndarray | None:
    """EMA of |new - prev| per element: ema <- (1 - a) * ema + a * |new - prev| (a = 0.2).

    No previous sample -> None (nothing measured yet); first measured change seeds the EMA.
    """
    new_sample = np.asarray(new_sample, dtype=np.float64)
    if prev_sample is None:
        return None
    prev_sample = np.asarray(prev_sample, dtype=np.float64)
    if prev_sample.shape != new_sample.shape:
        raise ScoreInputError(f"sample length changed: {prev_sample.shape} -> {new_sample.shape}")
    change = np.abs(new_sample - prev_sample)
    if ema is None:
        return change
    return (1.0 - cfg.sync_ema_alpha) * np.asarray(ema, np.float64) + cfg.sync_ema_alpha * change


def observe_validator_sample(
    state: ValidatorState, sample: np.ndarray, cfg: GauntletConfig
) -> ValidatorState:
    """Record the validator's own sample of this window and advance the change EMA."""
    prev = None if state.sync_prev_sample is None else np.asarray(state.sync_prev_sample)
    ema = None if state.sync_change_ema is None else np.asarray(state.sync_change_ema)
    if prev is not None and prev.shape != np.shape(sample):
        prev, ema = None, None  # the parameter table changed: start the EMA over
    new_ema = update_change_ema(prev, sample, ema, cfg)
    return _replace_sync(state, sample, new_ema)


def _replace_sync(state: ValidatorState, sample: np.ndarray, ema: np.ndarray | None) -> ValidatorState:
    return dataclasses.replace(
        state,
        sync_prev_sample=tuple(float(v) for v in np.asarray(sample, np.float64)),
        sync_change_ema=None if ema is None else tuple(float(v) for v in ema),
    )


def robust_mean(values: np.ndarray, cfg: GauntletConfig) -> float:
    """Median, or the mean after cutting sync_trim_fraction from each end of the sorted values."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        raise ScoreInputError("robust mean of an empty sample")
    if cfg.sync_robust == "median":
        return float(np.median(values))
    cut = int(math.floor(values.size * cfg.sync_trim_fraction))
    kept = np.sort(values)[cut: values.size - cut]
    return float(kept.mean())


def steps_behind(
    val_sample: np.ndarray, miner_sample: np.ndarray, change_ema: np.ndarray, cfg: GauntletConfig
) -> float:
    """x: robust mean over elements of |val - miner| / max(ema, floor); inf if miner non-finite."""
    val = np.asarray(val_sample, np.float64)
    miner = np.asarray(miner_sample, np.float64)
    ema = np.asarray(change_ema, np.float64)
    if not (val.shape == miner.shape == ema.shape):
        raise ScoreInputError(f"sample shapes differ: {val.shape}, {miner.shape}, {ema.shape}")
    if not np.all(np.isfinite(miner)):
        return math.inf
    per_element = np.abs(val - miner) / np.maximum(ema, cfg.sync_ema_floor)
    return robust_mean(per_element, cfg)


def sync_score(x: float, cfg: GauntletConfig) -> float:
    """max(0, 1 - min(x, 3)/3) ** 2.5: 1 in sync, 0 at 3 or more steps behind."""
    if math.isnan(x):
        return 0.0
    clipped = min(max(float(x), 0.0), cfg.sync_max_steps)
    return max(0.0, 1.0 - clipped / cfg.sync_max_steps) ** cfg.sync_exponent
