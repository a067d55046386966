"""Shard sets wherever they live (folder, file://, s3:// via the local moto server), the shard
schedule, and `prepare-data --upload`."""

from __future__ import annotations

import numpy as np
import pytest

from templar_jax.cli import main
from templar_jax.config import load_run_config
from templar_jax.data import DataError, ShardDataset, write_shard
from templar_jax.data.errors import HashMismatch, ManifestError
from templar_jax.data.manifest import build_manifest, write_manifest
from templar_jax.data.schedule import ShardSchedule
from templar_jax.data.sources import default_cache_dir, open_shard_sets
from templar_jax.data.upload import upload_plan, upload_shard_sets
from templar_jax.neurons.datasets import open_datasets
from templar_jax.storage import Bucket

pytest_plugins = ["tests.servers"]

L, COUNTS = 8, (5, 3, 4)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """train/ (3 shards, eos 7) + heldout/ (1 shard) + a loose notes.txt, and all train rows."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(5)
    rows = []
    for split, counts in (("train", COUNTS), ("heldout", (2,))):
        (root / split).mkdir()
        for i, n in enumerate(counts):
            t = rng.integers(0, 100, size=n * L).astype(np.uint32)
            write_shard(root / split, i, t, L)
            if split == "train":
                rows.append(t.reshape(n, L))
        write_manifest(root / split, build_manifest(root / split, L, list(enumerate(counts)), eos_id=7))
    (root / "notes.txt").write_text("loose file\n")
    return root, np.concatenate(rows)


def test_schedule_walks_the_shards_by_global_step_and_replays():
    s = ShardSchedule(outer_steps_per_shard=2, n_shards=3)
    assert [s.position(g) for g in range(8)] == [0, 0, 1, 1, 2, 2, 0, 0]
    assert [s.next_position(g) for g in (0, 3, 5)] == [1, 2, 0]
    for bad in (lambda: ShardSchedule(0, 3), lambda: ShardSchedule(1, 0), lambda: s.position(-1)):
        with pytest.raises(DataError):
            bad()


def test_shard_views_number_one_shard_from_zero(corpus):
    root, rows = corpus
    ds = ShardDataset(root / "train", L)
    view = ds.shard_view(1)
    assert view.n_samples == 3 and view.shard_indices == (1,)
    np.testing.assert_array_equal(view.samples([0, 2]), rows[[5, 7]])
    np.testing.assert_array_equal(view.ids([1]), ds.ids([6]))
    assert ds.shard_view(1) is view
    with pytest.raises(DataError, match="shard position 3 out of range"):
        ds.shard_view(3)


def test_data_sets_follow_the_schedule(corpus, tmp_path):
    root, rows = corpus
    cfg = load_run_config("demo", [f"data.path=file://{root}", f"data.seq_len={L}", "data.outer_steps_per_shard=2"])
    data = open_datasets(cfg.data)
    assert data.pad_id == 7 and data.heldout.n_samples == 2  # pad = the manifest's EOS
    assert data.train_at(2).n_samples == 3 and data.train_at(5).n_samples == 4 and data.train_at(6).n_samples == 5
    np.testing.assert_array_equal(data.train_at(4).samples([0]), rows[[8]])
    off = open_datasets(load_run_config("demo", [f"data.path={root}", f"data.seq_len={L}"]).data)
    assert off.schedule is None and off.train_at(7) is off.train  # no schedule: every shard, every step
    with pytest.raises(DataError, match="outer_steps_per_shard must be >= 1"):
        open_datasets(load_run_config("demo", [f"data.path={root}", f"data.seq_len={L}",
                                               "data.outer_steps_per_shard=-1"]).data)


def test_upload_plan_puts_each_manifest_after_its_files(corpus):
    root, _ = corpus
    keys = [k for _, k in upload_plan(root)]
    assert keys.index("heldout/manifest.json") == 2 and keys.index("train/manifest.json") == 9
    assert keys[-1] == "notes.txt" and len(keys) == 11


def test_upload_refuses_a_file_that_fails_its_manifest(corpus, tmp_path):
    root, _ = corpus
    bad = tmp_path / "bad"
    bad.mkdir()
    for p in (root / "heldout").iterdir():
        (bad / p.name).write_bytes(p.read_bytes())
    raw = bytearray((bad / "train_000000.npy").read_bytes())
    raw[-1] ^= 1
    (bad / "train_000000.npy").write_bytes(bytes(raw))
    with pytest.raises(HashMismatch, match="train_000000.npy: sha256"):
        upload_plan(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no manifest.json"):
        upload_plan(tmp_path / "empty")


def test_s3_bucket_round_trip_with_schedule_prefetch_and_release(corpus, s3_server, tmp_path):
    root, rows = corpus
    url = f"s3://{s3_server.new_bucket()}/corpus"
    bucket = Bucket.open(url, s3_server.credentials, endpoint=s3_server.endpoint)
    stats = upload_shard_sets(root, bucket)
    assert stats.objects == 11
    sets = open_shard_sets(url, L, cache_dir=tmp_path / "cache", endpoint=s3_server.endpoint,
                           credentials=s3_server.credentials)
    assert sets.pad_id == 7 and sets.heldout.n_samples == 2 and sets.train.n_samples == 12
    np.testing.assert_array_equal(sets.train.samples(range(12)), rows)
    cache = tmp_path / "cache" / "train"
    sets.train.release_shard(0)  # the schedule moved on: the cached token file goes
    assert not (cache / "train_000000.npy").exists() and (cache / "sample_ids_000000.npy").exists()
    np.testing.assert_array_equal(sets.train.shard_view(0).samples([4]), rows[[4]])  # fetched again
    with pytest.raises(ManifestError, match="no manifest.json at its root or under train/"):
        open_shard_sets(url + "/train/nothing", L, cache_dir=tmp_path / "c2", endpoint=s3_server.endpoint,
                        credentials=s3_server.credentials)
    assert default_cache_dir(url) == default_cache_dir(url + "/") != default_cache_dir(url + "2")


def test_bad_manifest_in_a_bucket_is_a_manifest_error(tmp_path):
    bucket_dir = tmp_path / "b"
    Bucket.open(f"file://{bucket_dir}").put("corpus/manifest.json", b'{"format": "other"}')
    from templar_jax.data.remote import ShardCache

    with pytest.raises(ManifestError, match="not a templar-jax-shards manifest"):
        ShardCache(Bucket.open(f"file://{bucket_dir}"), "corpus", tmp_path / "cache").manifest()


def test_prepare_data_uploads_what_it_prepared(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(20):
        (docs / f"d{i}.txt").write_text(f"document {i} " + "some words to tokenize " * (i + 3))
    out, dest = tmp_path / "out", tmp_path / "bucket"
    rc = main(["prepare-data", "--input", str(docs), "--out", str(out), "--seq-len", "16", "--vocab-size", "300",
               "--samples-per-shard", "8", "--upload", f"file://{dest}"])
    assert rc == 0
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in out.iterdir())
    for p in out.iterdir():
        assert (dest / p.name).read_bytes() == p.read_bytes()
    sets = open_shard_sets(f"file://{dest}", 16)
    assert sets.tokenizer_path == dest / "tokenizer.json" and sets.pad_id == 0
    rc = main(["prepare-data", "--input", str(docs), "--out", str(tmp_path / "o2"), "--seq-len", "16",
               "--vocab-size", "300", "--upload", "ftp://nowhere"])
    assert rc == 1
