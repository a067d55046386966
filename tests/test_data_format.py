"""Shard format round trip, sample ids, ShardDataset indexing, and typed errors on bad files."""

import hashlib
import json

import numpy as np
import pytest

from templar_jax.data import DataError, ShardDataset, compute_sample_ids, sample_id, write_shard
from templar_jax.data.manifest import build_manifest, write_manifest
from templar_jax.data.prepare import write_shard_set

L = 16


def _shard_set(folder, n_per_shard=(5, 3, 4), with_manifest=True, seed=0):
    rng = np.random.default_rng(seed)
    tokens = []
    for i, n in enumerate(n_per_shard):
        t = rng.integers(0, 2**32, size=n * L, dtype=np.uint64).astype(np.uint32)
        write_shard(folder, i, t, L)
        tokens.append(t.reshape(n, L))
    if with_manifest:
        write_manifest(folder, build_manifest(folder, L, list(enumerate(n_per_shard))))
    return np.concatenate(tokens)


def test_sample_id_is_blake2b64_of_le_uint32_bytes():
    s = np.array([1, 2, 0xFFFFFFFF, 7], dtype=np.uint32)
    raw = b"".join(int(v).to_bytes(4, "little") for v in s)
    want = int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")
    assert sample_id(s) == want
    assert sample_id(np.arange(4, dtype=np.uint32)) == 18058939085400907254
    # Big-endian input arrays give the same id (the definition is about values, not memory).
    assert sample_id(s.astype(">u4")) == want


def test_round_trip_files_and_ids(tmp_path):
    all_NxL = _shard_set(tmp_path)
    train = np.load(tmp_path / "train_000001.npy", allow_pickle=False)
    ids = np.load(tmp_path / "sample_ids_000001.npy", allow_pickle=False)
    assert train.dtype == np.uint32 and ids.dtype == np.uint64
    np.testing.assert_array_equal(train.reshape(-1, L), all_NxL[5:8])
    assert [int(x) for x in ids] == [sample_id(r) for r in all_NxL[5:8]]

    ds = ShardDataset(tmp_path, L, verify_hash=True)
    assert (ds.n_samples, ds.n_shards) == (12, 3)
    order = [11, 0, 5, 4, 8, 7]  # crosses all shard boundaries, out of order
    got = ds.samples(order)
    assert got.dtype == np.uint32 and got.shape == (6, L)
    np.testing.assert_array_equal(got, all_NxL[order])
    np.testing.assert_array_equal(ds.sample_ids, compute_sample_ids(all_NxL))
    np.testing.assert_array_equal(ds.ids(order), compute_sample_ids(all_NxL[order]))


def test_dataset_without_manifest_and_from_file_list(tmp_path):
    all_NxL = _shard_set(tmp_path, with_manifest=False)
    ds = ShardDataset(tmp_path, L)
    np.testing.assert_array_equal(ds.samples(range(12)), all_NxL)
    only = ShardDataset([tmp_path / "train_000002.npy", tmp_path / "train_000000.npy"], L)
    assert only.n_samples == 9  # shards 0 and 2, in shard order
    np.testing.assert_array_equal(only.samples([5, 6]), all_NxL[8:10])


def test_out_of_range_index_is_typed_error(tmp_path):
    _shard_set(tmp_path)
    with pytest.raises(DataError, match="out of range"):
        ShardDataset(tmp_path, L).samples([12])


def test_truncated_shard_without_manifest(tmp_path):
    _shard_set(tmp_path, with_manifest=False)
    path = tmp_path / "train_000001.npy"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="train_000001.npy"):
        ShardDataset(tmp_path, L)


def test_truncated_shard_with_manifest(tmp_path):
    _shard_set(tmp_path)
    path = tmp_path / "train_000002.npy"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(DataError, match=r"train_000002.npy: size 380 != 384 .*\(truncated\)"):
        ShardDataset(tmp_path, L)


def test_corrupted_sample_detected_by_ids(tmp_path):
    _shard_set(tmp_path, with_manifest=False)
    path = tmp_path / "train_000000.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # last token of the last sample of shard 0 (global sample 4)
    path.write_bytes(bytes(raw))
    ds = ShardDataset(tmp_path, L)
    ds.samples([0, 1, 2, 3])  # untouched samples still read fine
    with pytest.raises(DataError, match="sample 4 .*corrupted"):
        ds.samples([4])


def test_corrupted_file_detected_by_manifest_hash(tmp_path):
    _shard_set(tmp_path)
    path = tmp_path / "sample_ids_000001.npy"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x01
    path.write_bytes(bytes(raw))
    ShardDataset(tmp_path, L)  # sizes still match: only the hash check can see this
    with pytest.raises(DataError, match="sample_ids_000001.npy: sha256"):
        ShardDataset(tmp_path, L, verify_hash=True)


def test_manifest_mismatches_are_typed_errors(tmp_path):
    _shard_set(tmp_path)
    with pytest.raises(DataError, match="seq_len 16 != requested 32"):
        ShardDataset(tmp_path, 32)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["files"]["train_000000.npy"]["size"] += 64
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="too long|truncated"):
        ShardDataset(tmp_path, L)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        ShardDataset(tmp_path, L)
    del doc["files"]["sample_ids_000002.npy"]
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="no entry for sample_ids_000002.npy"):
        ShardDataset(tmp_path, L)


def test_wrong_dtype_and_count_mismatch(tmp_path):
    _shard_set(tmp_path, with_manifest=False)
    np.save(tmp_path / "train_000000.npy", np.zeros(5 * L, dtype=np.int64))
    with pytest.raises(DataError, match="dtype int64"):
        ShardDataset(tmp_path, L)
    np.save(tmp_path / "train_000000.npy", np.zeros(4 * L, dtype=np.uint32))
    with pytest.raises(DataError, match="5 sample ids for 4 samples"):
        ShardDataset(tmp_path, L)


def test_pickled_npy_is_refused(tmp_path):
    _shard_set(tmp_path, with_manifest=False)
    np.save(tmp_path / "train_000000.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="train_000000.npy"):
        ShardDataset(tmp_path, L)


def test_packing_eos_and_padding(tmp_path):
    docs = [np.arange(1, 6), np.arange(10, 13), np.arange(20, 40)]  # 5 + 3 + 20 tokens
    manifest, stats = write_shard_set(docs, tmp_path, seq_len=8, samples_per_shard=2, eos_id=0)
    stream = np.concatenate([np.arange(1, 6), [0], np.arange(10, 13), [0], np.arange(20, 40), [0]])
    assert stream.size == 31 and stats.n_pad == 1 and stats.n_tokens == 32
    want = np.concatenate([stream, [0]]).reshape(4, 8)
    assert (stats.n_samples, stats.n_shards, stats.n_documents) == (4, 2, 3)
    ds = ShardDataset(tmp_path, 8, verify_hash=True)
    np.testing.assert_array_equal(ds.samples(range(4)), want)
    assert manifest.eos_id == 0 and [n for _, n in manifest.shards] == [2, 2]


def test_write_shard_rejects_bad_streams(tmp_path):
    with pytest.raises(DataError, match="multiple of seq_len"):
        write_shard(tmp_path, 0, np.zeros(10, np.uint32), 4)
    with pytest.raises(DataError, match="uint32 range"):
        write_shard(tmp_path, 0, np.full(4, 2**33, np.int64), 4)


def test_local_batches_of_all_processes_rebuild_the_global_batch(tmp_path):
    from templar_jax.data import local_batch, miner_pool

    _shard_set(tmp_path)
    ds = ShardDataset(tmp_path, L)
    global_idx = miner_pool(3, 1, ds.n_samples, 2, 4)
    parts = [local_batch(ds, global_idx, p, 4) for p in range(4)]
    assert all(p.shape == (2, L) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), ds.samples(global_idx))
