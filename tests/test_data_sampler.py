"""Sampler formulas (SPEC sec. 5-6) pinned to literal values, plus their invariants."""

import hashlib

import numpy as np
import pytest

from templar_jax.data import (
    DataError,
    miner_pool,
    pool_seed,
    process_slice,
    sample_digest,
    trained_indices,
    validator_own_indices,
    validator_random_indices,
)


def test_pool_seed_formula_pinned():
    assert pool_seed(7, 123) == 6999982 == ((7 * 1000003) ^ 123)
    # Masked to 32 bits for large uids/windows.
    assert pool_seed(2**40 + 5, 99) == 4999980
    assert pool_seed(2**40 + 5, 99) < 2**32


def test_miner_pool_pinned_values():
    assert miner_pool(7, 123, 1000, 2, 4).tolist() == [511, 306, 681, 766, 364, 130, 756, 768]
    assert miner_pool(0, 0, 50, 3, 2).tolist() == [12, 29, 24, 15, 2, 38]
    # Exactly the SPEC expression.
    expect = np.random.default_rng(pool_seed(7, 123)).choice(1000, size=8, replace=False)
    np.testing.assert_array_equal(miner_pool(7, 123, 1000, 2, 4), expect)


@pytest.mark.parametrize("uid,window", [(0, 0), (3, 17), (255, 10**6)])
def test_pool_never_repeats_and_stays_in_range(uid, window):
    pool = miner_pool(uid, window, 300, 10, 30)  # pool == whole dataset: the hardest case
    assert len(pool) == 300 and len(np.unique(pool)) == 300
    assert pool.min() >= 0 and pool.max() < 300


def test_pools_differ_between_uids_and_windows():
    a, b, c = miner_pool(1, 5, 10_000, 4, 8), miner_pool(2, 5, 10_000, 4, 8), miner_pool(1, 6, 10_000, 4, 8)
    assert not np.array_equal(a, b) and not np.array_equal(a, c)


def test_trained_indices_are_pool_prefix_by_step():
    pool = miner_pool(7, 123, 1000, 2, 4)
    steps = trained_indices(pool, 2, 3)
    assert steps.tolist() == [[511, 306, 681], [766, 364, 130]]
    with pytest.raises(DataError, match="exceeds the pool"):
        trained_indices(pool, 3, 3)


def test_pool_too_big_for_dataset_is_typed_error():
    with pytest.raises(DataError, match="at least"):
        miner_pool(1, 1, 10, 3, 4)


def test_sample_digest_byte_encoding_pinned():
    ids = np.array([3, 1, 2], dtype=np.uint64)
    raw = b"".join(int(v).to_bytes(8, "little") for v in (1, 2, 3))
    assert sample_digest(ids) == hashlib.blake2b(raw, digest_size=16).hexdigest()
    assert sample_digest(ids) == "abccad42d03c940bc2b249bf5a4e1e3d"
    # Order-independent (sorted before hashing), but content-dependent.
    assert sample_digest(ids[::-1]) == sample_digest(ids)
    assert sample_digest(np.array([1, 2, 4], dtype=np.uint64)) != sample_digest(ids)
    # Full uint64 range survives (no float/int64 conversion on the way).
    big = np.array([2**64 - 1, 0], dtype=np.uint64)
    assert sample_digest(big) == hashlib.blake2b(bytes(8) + b"\xff" * 8, digest_size=16).hexdigest()


def test_validator_own_data_pinned_and_subset_of_trained_pool():
    assert validator_own_indices(7, 123, 1000, 2, 4, 3, validator_seed=11, n=3).tolist() == [306, 681, 130]
    for uid, window, seed in [(0, 0, 0), (5, 99, 1), (42, 7, 123)]:
        pool = miner_pool(uid, window, 5000, 8, 16)
        trained = set(pool[: 8 * 12].tolist())
        own = validator_own_indices(uid, window, 5000, 8, 16, 12, validator_seed=seed)
        assert len(own) == 8 and len(set(own.tolist())) == 8
        assert set(own.tolist()) <= trained


def test_validator_own_data_depends_on_validator_seed():
    a = validator_own_indices(3, 9, 5000, 8, 16, 16, validator_seed=1)
    b = validator_own_indices(3, 9, 5000, 8, 16, 16, validator_seed=2)
    assert not np.array_equal(a, b)


def test_validator_random_data_pinned():
    assert validator_random_indices(123, 1000, validator_seed=11).tolist() == [938, 157, 506, 783, 339, 653, 140, 299]
    r = validator_random_indices(124, 1000, validator_seed=11)
    assert len(set(r.tolist())) == 8 and not np.array_equal(r, validator_random_indices(123, 1000, validator_seed=11))


@pytest.mark.parametrize("count", [1, 2, 4, 8])
def test_process_slices_cover_batch_exactly_once(count):
    batch = miner_pool(9, 4, 10_000, 1, 32)
    parts = [process_slice(batch, p, count) for p in range(count)]
    assert all(len(p) == 32 // count for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), batch)  # each row once, in order


def test_process_slice_rejects_uneven_or_bad_index():
    with pytest.raises(DataError, match="evenly"):
        process_slice(np.arange(10), 0, 3)
    with pytest.raises(DataError, match="process_index"):
        process_slice(np.arange(8), 4, 4)
