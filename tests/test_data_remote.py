"""Shards in a bucket: an in-memory source with the storage protocol, download, resume, prefetch."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from templar_jax.data import DataError, ShardDataset, write_shard
from templar_jax.data.manifest import build_manifest, write_manifest

L = 8
COUNTS = (6, 4, 5)


class MemorySource:
    """get / get_range [start, end) / head, like templar_jax.storage.Bucket; records reads."""

    def __init__(self, objects: dict[str, bytes], ranged: bool = True):
        self.objects = dict(objects)
        self.reads: list[tuple[str, int, int]] = []
        self.lock = threading.Lock()
        if not ranged:
            self.get_range = None

    def get(self, key):
        if key not in self.objects:
            raise KeyError(key)
        with self.lock:
            self.reads.append((key, 0, len(self.objects[key])))
        return self.objects[key]

    def get_range(self, key, start, end):
        with self.lock:
            self.reads.append((key, start, end))
        return self.objects[key][start:end]

    def head(self, key):
        return len(self.objects[key]) if key in self.objects else None

    def bytes_read(self, name):
        return sum(e - s for k, s, e in self.reads if k.endswith(name))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A local shard set and its objects under prefix 'data/v1' (a bucket's view)."""
    folder = tmp_path_factory.mktemp("published")
    rng = np.random.default_rng(1)
    rows = []
    for i, n in enumerate(COUNTS):
        t = rng.integers(0, 4096, size=n * L).astype(np.uint32)
        write_shard(folder, i, t, L)
        rows.append(t.reshape(n, L))
    write_manifest(folder, build_manifest(folder, L, list(enumerate(COUNTS))))
    objects = {f"data/v1/{p.name}": p.read_bytes() for p in folder.iterdir()}
    return folder, objects, np.concatenate(rows)


def test_remote_dataset_matches_local_and_downloads_lazily(published, tmp_path):
    folder, objects, all_NxL = published
    src = MemorySource(objects)
    ds = ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False)
    assert ds.n_samples == sum(COUNTS)
    np.testing.assert_array_equal(ds.sample_ids, ShardDataset(folder, L).sample_ids)
    assert src.bytes_read("train_000000.npy") == 0  # ids known, no token shard read yet
    np.testing.assert_array_equal(ds.samples([7, 8]), all_NxL[[7, 8]])  # shard 1 only
    assert src.bytes_read("train_000001.npy") == len(objects["data/v1/train_000001.npy"])
    assert src.bytes_read("train_000000.npy") == src.bytes_read("train_000002.npy") == 0
    np.testing.assert_array_equal(ds.samples(range(sum(COUNTS))), all_NxL)


def test_prefetch_downloads_next_shard_in_background(published, tmp_path):
    _, objects, all_NxL = published
    src = MemorySource(objects)
    ds = ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=True)
    ds.samples([0])
    ds.cache.fetch("train_000001.npy")  # waits for the background download if still running
    assert (tmp_path / "train_000001.npy").exists()
    assert not (tmp_path / "train_000002.npy").exists()
    n_reads = len(src.reads)
    np.testing.assert_array_equal(ds.samples([6, 9]), all_NxL[[6, 9]])
    ds.cache.close()
    assert (tmp_path / "train_000002.npy").exists()  # touching shard 1 prefetched shard 2
    assert all(k.endswith("train_000002.npy") for k, _, _ in src.reads[n_reads:])


def test_a_failed_prefetch_is_logged_and_retried_on_use(published, tmp_path, caplog):
    _, objects, all_NxL = published
    src = MemorySource(objects)
    ds = ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False)
    src.objects.pop("data/v1/train_000001.npy")
    with caplog.at_level("WARNING", logger="templar_jax.data.remote"):
        ds.prefetch_shard(1)
        ds.cache.close()  # the background download has ended
    assert "train_000001.npy: background download failed" in caplog.text
    src.objects["data/v1/train_000001.npy"] = objects["data/v1/train_000001.npy"]
    np.testing.assert_array_equal(ds.samples([6, 9]), all_NxL[[6, 9]])


def test_resume_from_partial_file_reads_only_the_rest(published, tmp_path):
    _, objects, all_NxL = published
    data = objects["data/v1/train_000000.npy"]
    (tmp_path / "train_000000.npy.partial").write_bytes(data[:100])
    src = MemorySource(objects)
    ds = ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False)
    np.testing.assert_array_equal(ds.samples([0, 5]), all_NxL[[0, 5]])
    assert src.bytes_read("train_000000.npy") == len(data) - 100
    assert not (tmp_path / "train_000000.npy.partial").exists()


def test_interrupted_download_then_resume(published, tmp_path):
    _, objects, all_NxL = published

    class Flaky(MemorySource):
        fail = True

        def get_range(self, key, start, end):
            if self.fail and key.endswith("train_000002.npy") and start > 0:
                raise ConnectionError("connection reset")
            return super().get_range(key, start, end)

    src = Flaky(objects)
    ds = ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False)
    ds.cache.chunk_bytes = 64
    with pytest.raises(DataError, match="train_000002.npy: download failed at byte 64 of"):
        ds.samples([12])
    assert (tmp_path / "train_000002.npy.partial").stat().st_size == 64
    src.fail, src.reads = False, []
    np.testing.assert_array_equal(ds.samples([12]), all_NxL[[12]])
    assert min(s for k, s, _ in src.reads if k.endswith("train_000002.npy")) == 64


def test_source_without_ranged_reads(published, tmp_path):
    _, objects, all_NxL = published
    (tmp_path / "train_000001.npy.partial").write_bytes(b"junk")  # cannot resume: restarts
    ds = ShardDataset.from_source(MemorySource(objects, ranged=False), "data/v1", tmp_path, L)
    np.testing.assert_array_equal(ds.samples(range(15)), all_NxL)


def test_cached_files_are_reused(published, tmp_path):
    _, objects, _ = published
    ShardDataset.from_source(MemorySource(objects), "data/v1", tmp_path, L).samples(range(15))
    again = MemorySource(objects)
    ShardDataset.from_source(again, "data/v1", tmp_path, L).samples(range(15))
    assert [k for k, _, _ in again.reads] == ["data/v1/manifest.json"]


def test_corrupted_remote_object_is_rejected(published, tmp_path):
    _, objects, _ = published
    bad = dict(objects)
    raw = bytearray(bad["data/v1/train_000001.npy"])
    raw[-1] ^= 0x55
    bad["data/v1/train_000001.npy"] = bytes(raw)
    ds = ShardDataset.from_source(MemorySource(bad), "data/v1", tmp_path, L, prefetch=False)
    ds.samples([0])
    with pytest.raises(DataError, match="train_000001.npy.partial: sha256"):
        ds.samples([6])
    assert not (tmp_path / "train_000001.npy.partial").exists()
    assert not (tmp_path / "train_000001.npy").exists()


def test_corrupted_cached_copy_is_downloaded_again(published, tmp_path):
    _, objects, all_NxL = published
    ShardDataset.from_source(MemorySource(objects), "data/v1", tmp_path, L).samples(range(15))
    path = tmp_path / "train_000000.npy"
    raw = bytearray(path.read_bytes())
    raw[-2] ^= 1
    path.write_bytes(bytes(raw))
    src = MemorySource(objects)
    np.testing.assert_array_equal(
        ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False).samples([0, 5]), all_NxL[[0, 5]])
    assert src.bytes_read("train_000000.npy") == len(objects["data/v1/train_000000.npy"])


def test_size_mismatch_missing_object_and_missing_manifest(published, tmp_path):
    _, objects, _ = published
    short = dict(objects)
    short["data/v1/train_000000.npy"] = short["data/v1/train_000000.npy"][:-8]
    with pytest.raises(DataError, match="source has .* bytes, manifest.json says"):
        ShardDataset.from_source(MemorySource(short), "data/v1", tmp_path / "a", L).samples([0])
    gone = {k: v for k, v in objects.items() if not k.endswith("sample_ids_000002.npy")}
    with pytest.raises(DataError, match="sample_ids_000002.npy: listed in manifest.json but missing"):
        ShardDataset.from_source(MemorySource(gone), "data/v1", tmp_path / "b", L)
    with pytest.raises(DataError, match="cannot fetch manifest"):
        ShardDataset.from_source(MemorySource(objects), "other/prefix", tmp_path / "c", L)
    with pytest.raises(DataError, match="seq_len 8 != requested 16"):
        ShardDataset.from_source(MemorySource(objects), "data/v1", tmp_path / "d", 16)


def test_file_bucket_source_if_storage_available(published, tmp_path):
    storage = pytest.importorskip("templar_jax.storage")
    bucket_cls = getattr(storage, "Bucket", None)
    if bucket_cls is None:
        pytest.skip("templar_jax.storage.Bucket not built yet")
    folder, objects, all_NxL = published
    root = tmp_path / "bucket"
    bucket = bucket_cls.open(f"file://{root}")
    for key, data in objects.items():
        bucket.put(key, data)
    ds = ShardDataset.from_source(bucket, "data/v1", tmp_path / "cache", L)
    np.testing.assert_array_equal(ds.samples(range(15)), all_NxL)
    assert Path(tmp_path / "cache" / "manifest.json").exists()


def test_a_resumed_download_whose_kept_prefix_is_bad_is_redone_whole(published, tmp_path):
    _, objects, all_NxL = published
    data = objects["data/v1/train_000000.npy"]
    (tmp_path / "train_000000.npy.partial").write_bytes(b"\0" * 100)  # not the object's first bytes
    src = MemorySource(objects)
    ds = ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False)
    np.testing.assert_array_equal(ds.samples([0, 5]), all_NxL[[0, 5]])
    assert src.bytes_read("train_000000.npy") == (len(data) - 100) + len(data)  # resumed, then whole


def test_failures_are_typed(published, tmp_path):
    from templar_jax.data.errors import HashMismatch, ShardFetchError

    _, objects, _ = published
    short = dict(objects)
    short["data/v1/train_000000.npy"] = short["data/v1/train_000000.npy"][:-8]
    with pytest.raises(HashMismatch):
        ShardDataset.from_source(MemorySource(short), "data/v1", tmp_path / "a", L).samples([0])
    with pytest.raises(ShardFetchError):
        ShardDataset.from_source(MemorySource(objects), "other/prefix", tmp_path / "c", L)


def test_two_caches_sharing_a_folder_download_a_file_once(published, tmp_path):
    """Two processes (here: two caches in two threads) on one cache folder: the per-file lock lets
    one download while the other waits, then finds the verified file."""
    _, objects, all_NxL = published

    class Slow(MemorySource):
        def get_range(self, key, start, end):
            time.sleep(0.05)  # both readers are inside the download at once without the lock
            return super().get_range(key, start, end)

    src = Slow(objects)
    caches = [ShardDataset.from_source(src, "data/v1", tmp_path, L, prefetch=False) for _ in range(2)]
    for c in caches:
        c.cache.chunk_bytes = 64
    out = [None, None]

    def read(k):
        out[k] = caches[k].samples([1, 4])

    threads = [threading.Thread(target=read, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in out:
        np.testing.assert_array_equal(got, all_NxL[[1, 4]])
    assert src.bytes_read("train_000000.npy") == len(objects["data/v1/train_000000.npy"])


def test_schedule_prefetches_the_next_shard_and_releases_the_one_left_behind(published, tmp_path):
    from templar_jax.data.schedule import ShardSchedule
    from templar_jax.neurons.datasets import DataSets

    _, objects, all_NxL = published
    ds = ShardDataset.from_source(MemorySource(objects), "data/v1", tmp_path, L)
    data = DataSets(ds, None, None, ShardSchedule(outer_steps_per_shard=1, n_shards=3))
    np.testing.assert_array_equal(data.train_at(0).samples([5]), all_NxL[[5]])
    ds.cache.fetch("train_000001.npy")  # the prefetch of shard 1 (waits if still running)
    np.testing.assert_array_equal(data.train_at(1).samples([0]), all_NxL[[6]])
    np.testing.assert_array_equal(data.train_at(2).samples([4]), all_NxL[[14]])
    ds.cache.close()
    assert not (tmp_path / "train_000001.npy").exists()  # left behind: released
    assert (tmp_path / "train_000000.npy").exists()  # comes next (replay): kept
    np.testing.assert_array_equal(data.train_at(4).samples([1]), all_NxL[[7]])  # shard 1 again: fetched again
