"""Deterministic samplers (SPEC sec. 5 and 6): what a miner trains on, what a validator checks.

All indices are global sample indices of a `ShardDataset`. Everything here is a pure function of
its integer arguments, so any peer can recompute any other peer's choice.

Miner pool (SPEC sec. 6):
    seed = (uid * 1000003 ^ window) & 0xFFFFFFFF
    pool = np.random.default_rng(seed).choice(n_samples, size=inner_steps * target_batch, replace=False)
  The miner trains on pool[:inner_steps * batch] (step s uses pool[s*batch:(s+1)*batch]).
  Python precedence: `*` binds tighter than `^`, i.e. ((uid * 1000003) ^ window) & 0xFFFFFFFF.

sample_digest: BLAKE2b (digest_size 16) over the pool's sample ids sorted ascending, each
encoded as 8 little-endian bytes, concatenated; returned as 32 lowercase hex characters.

Validator samplers (8 sequences each by default):
  own data: `n` distinct positions drawn from the first `inner_steps * batch` pool entries (the
    part the miner actually trained on) by
    np.random.default_rng([OWN_TAG, validator_seed, uid, window]).choice(trained, n, replace=False)
    and returned as pool[positions]; a validator-local seed keeps miners from knowing which
    8 of their sequences will be checked.
  random data: np.random.default_rng([RANDOM_TAG, validator_seed, window]).choice(n_samples, n,
    replace=False): not tied to any pool, the same for every miner in a window.
"""

from __future__ import annotations

import hashlib

import numpy as np

from templar_jax.data.errors import DataError

OWN_TAG = 0x0317    # domain separation for the validator's seeded choices
RANDOM_TAG = 0x7A4D


def pool_seed(uid: int, window: int) -> int:
    return (uid * 1000003 ^ window) & 0xFFFFFFFF


def miner_pool(uid: int, window: int, n_samples: int, inner_steps: int, target_batch: int) -> np.ndarray:
    """int64 [inner_steps * target_batch]: the miner's distinct sample indices for a window."""
    size = inner_steps * target_batch
    if uid < 0 or window < 0:
        raise DataError(f"uid {uid} and window {window} must be >= 0")
    if size <= 0:
        raise DataError(f"pool size inner_steps*target_batch = {size} must be > 0")
    if size > n_samples:
        raise DataError(f"pool of {size} samples needs a dataset of at least that many, have {n_samples}")
    rng = np.random.default_rng(pool_seed(uid, window))
    return rng.choice(n_samples, size=size, replace=False).astype(np.int64)


def trained_indices(pool: np.ndarray, inner_steps: int, batch: int) -> np.ndarray:
    """int64 [inner_steps, batch]: the pool entries the miner trains on, one row per inner step."""
    if batch <= 0 or inner_steps * batch > len(pool):
        raise DataError(f"inner_steps*batch = {inner_steps * batch} exceeds the pool of {len(pool)}")
    return np.asarray(pool[: inner_steps * batch], dtype=np.int64).reshape(inner_steps, batch)


def sample_digest(sample_ids) -> str:
    """Hex BLAKE2b-128 of the sorted uint64 sample ids (little-endian 8 bytes each)."""
    ids = np.sort(np.asarray(sample_ids, dtype=np.uint64).reshape(-1))
    return hashlib.blake2b(ids.astype("<u8").tobytes(), digest_size=16).hexdigest()


def validator_own_indices(uid: int, window: int, n_samples: int, inner_steps: int, target_batch: int,
                          batch: int, *, validator_seed: int = 0, n: int = 8) -> np.ndarray:
    """int64 [n]: `n` of the samples miner `uid` trained on in `window` (a subset of its pool)."""
    pool = miner_pool(uid, window, n_samples, inner_steps, target_batch)
    trained = trained_indices(pool, inner_steps, batch).size
    if n > trained:
        raise DataError(f"asked for {n} own-data samples, the miner trained on only {trained}")
    rng = np.random.default_rng([OWN_TAG, validator_seed, uid, window])
    return pool[rng.choice(trained, size=n, replace=False)]


def validator_random_indices(window: int, n_samples: int, *, validator_seed: int = 0, n: int = 8) -> np.ndarray:
    """int64 [n]: distinct random samples for the window, independent of any miner's pool."""
    if n > n_samples:
        raise DataError(f"asked for {n} random samples from a dataset of {n_samples}")
    rng = np.random.default_rng([RANDOM_TAG, validator_seed, window])
    return rng.choice(n_samples, size=n, replace=False).astype(np.int64)


def process_slice(global_indices, process_index: int, process_count: int) -> np.ndarray:
    """This process's contiguous share of a global batch (leading axis split evenly).

    Process p gets rows [p*B/P, (p+1)*B/P), so the processes together cover the batch exactly
    once and in order, which is the layout `jax.make_array_from_process_local_data` expects
    for a batch sharded over the data axis. B must be divisible by P.
    """
    arr = np.asarray(global_indices)
    if process_count <= 0 or not 0 <= process_index < process_count:
        raise DataError(f"process_index {process_index} not in [0, {process_count})")
    if arr.ndim == 0 or arr.shape[0] % process_count:
        raise DataError(f"global batch of {arr.shape[0] if arr.ndim else 0} rows does not split "
                        f"evenly over {process_count} processes")
    per = arr.shape[0] // process_count
    return arr[process_index * per:(process_index + 1) * per]


def local_batch(dataset, global_indices, process_index: int, process_count: int) -> np.ndarray:
    """uint32 [B/P, seq_len]: the tokens this process loads for its slice of a global batch."""
    return dataset.samples(process_slice(global_indices, process_index, process_count))
