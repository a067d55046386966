"""Checkpoints through real buckets (file, local GCS server, local S3 server): publish, fetch,
restore onto another layout, pointer written last, verification of every byte."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from templar_jax.checkpoint.bootstrap import bootstrap_from_bucket, save_and_publish
from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints, abstract_target
from templar_jax.checkpoint.remote import (
    MANIFEST,
    RemoteCheckpointError,
    fetch_checkpoint,
    publish_checkpoint,
    read_latest,
    remote_windows,
)
from templar_jax.model import flat_param_shapes
from templar_jax.model.config import ModelConfig
from templar_jax.model.params import unflatten_params
from templar_jax.model.sharding import make_mesh, param_shardings
from templar_jax.storage import Bucket

pytest_plugins = ["tests.servers"]

VERSION = "t1"
CFG = ModelConfig(vocab_size=128, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8,
                  d_ff=64, tie_embeddings=False, max_seq_len=32)


@pytest.fixture(scope="module")
def params_by_window():
    """Random params in the model's layout, sharded by the model's rules over 8 devices."""
    shardings = param_shardings(CFG, make_mesh("fsdp=8"))

    def make(seed):
        rng = np.random.default_rng(seed)
        flat = {n: rng.standard_normal(s).astype(np.float32) for n, s in flat_param_shapes(CFG).items()}
        return jax.device_put(unflatten_params(flat), shardings)

    return {w: make(w) for w in (5, 9)}


def _open(backend: str, request, tmp_path) -> Bucket:
    if backend == "file":
        return Bucket.open(f"file://{tmp_path}/bucket")
    if backend == "gcs":
        server = request.getfixturevalue("gcs_server")
        return Bucket.open(f"gs://{server.new_bucket()}/validator")
    server = request.getfixturevalue("s3_server")
    return Bucket.open(f"s3://{server.new_bucket()}/validator", server.credentials,
                       endpoint=server.endpoint, region=server.region)


def _one_device_target(params):
    return abstract_target(params, NamedSharding(make_mesh("fsdp=1", jax.devices()[:1]), P()))


def _assert_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("backend", ["file", "gcs", "s3"])
def test_publish_fetch_restore_and_prune(backend, request, tmp_path, params_by_window):
    bucket = _open(backend, request, tmp_path)
    assert read_latest(bucket, VERSION) is None
    with pytest.raises(RemoteCheckpointError, match="no checkpoint published"):
        fetch_checkpoint(bucket, VERSION, tmp_path / "nothing")

    ckpts = LocalCheckpoints(tmp_path / "validator")
    for window in (5, 9):
        pointer = save_and_publish(ckpts, bucket, version=VERSION, window=window,
                                   params=params_by_window[window], global_step=30 * window,
                                   extra={"model": "test"}, keep=1)
        assert pointer["window"] == window
    ckpts.close()
    latest = read_latest(bucket, VERSION)
    assert latest["window"] == 9 and latest["info"] == {"global_step": 270}
    assert remote_windows(bucket, VERSION) == [9]  # keep=1 pruned window 5 after the pointer moved

    restored = bootstrap_from_bucket(bucket, VERSION, tmp_path / "joiner",
                                     target=_one_device_target(params_by_window[9]))
    assert restored.meta.window == 9 and restored.meta.global_step == 270
    assert restored.meta.extra == {"model": "test"}
    _assert_equal(restored.params, params_by_window[9])
    assert restored.params["layers"]["attn"]["wq"].sharding.device_set == {jax.devices()[0]}
    with pytest.raises(RemoteCheckpointError, match="manifest missing"):
        fetch_checkpoint(bucket, VERSION, tmp_path / "joiner2", window=5)


class _CrashAfter:
    """A bucket whose uploads fail after `n` puts (a validator dying mid-upload)."""

    def __init__(self, bucket, n):
        self._bucket, self._left = bucket, n

    def __getattr__(self, name):
        return getattr(self._bucket, name)

    async def aput(self, key, data):
        if self._left <= 0:
            raise OSError("simulated crash mid-upload")
        self._left -= 1
        await self._bucket.aput(key, data)

    async def aput_file(self, key, path):
        await self.aput(key, Path(path).read_bytes())

    def put(self, key, data):
        if self._left <= 0:
            raise OSError("simulated crash mid-upload")
        self._left -= 1
        self._bucket.put(key, data)


def test_crash_mid_upload_leaves_pointer_on_previous(tmp_path, params_by_window):
    bucket = Bucket.open(f"file://{tmp_path}/bucket")
    ckpts = LocalCheckpoints(tmp_path / "validator")
    save_and_publish(ckpts, bucket, version=VERSION, window=5, params=params_by_window[5],
                     global_step=150)
    ckpts.save(9, params_by_window[9], meta=CheckpointMeta(9, 270, VERSION))
    ckpts.wait()
    n_files = sum(1 for p in ckpts.step_dir(9).rglob("*") if p.is_file())
    # Die among the data files, or after every file and the manifest (only the pointer missing).
    for puts_before_crash in (3, n_files + 1):
        with pytest.raises(OSError, match="simulated crash"):
            publish_checkpoint(_CrashAfter(bucket, puts_before_crash), VERSION, 9,
                               ckpts.step_dir(9))
        assert read_latest(bucket, VERSION)["window"] == 5
        restored = bootstrap_from_bucket(bucket, VERSION, tmp_path / f"joiner{puts_before_crash}",
                                         target=_one_device_target(params_by_window[5]))
        assert restored.meta.window == 5
        _assert_equal(restored.params, params_by_window[5])
    assert bucket.head(f"checkpoints/{VERSION}/9/{MANIFEST}") is not None  # all but the pointer
    ckpts.close()


def test_tampered_or_malicious_manifest_is_rejected(tmp_path, params_by_window):
    bucket = Bucket.open(f"file://{tmp_path}/bucket")
    ckpts = LocalCheckpoints(tmp_path / "validator")
    save_and_publish(ckpts, bucket, version=VERSION, window=5, params=params_by_window[5],
                     global_step=150)
    ckpts.close()
    prefix = f"checkpoints/{VERSION}/5/"
    manifest = json.loads(bucket.get(prefix + MANIFEST))
    victim = max(manifest["files"], key=lambda e: e["size"])["path"]
    good = bucket.get(prefix + victim)
    bucket.put(prefix + victim, bytes([good[0] ^ 1]) + good[1:])
    with pytest.raises(RemoteCheckpointError, match="sha256"):
        fetch_checkpoint(bucket, VERSION, tmp_path / "dl")
    assert not (tmp_path / "dl" / "5").exists() and not (tmp_path / "dl" / "5.partial").exists()
    bucket.put(prefix + victim, good)

    escape = dict(manifest, files=[dict(manifest["files"][0], path="../../etc/evil")])
    bucket.put(prefix + MANIFEST, json.dumps(escape).encode())
    with pytest.raises(RemoteCheckpointError, match="bad manifest entry"):
        fetch_checkpoint(bucket, VERSION, tmp_path / "dl")
    bucket.put(prefix + MANIFEST, json.dumps(dict(manifest, window=6)).encode())
    with pytest.raises(RemoteCheckpointError, match="expected 't1' window 5"):
        fetch_checkpoint(bucket, VERSION, tmp_path / "dl")
    bucket.put(f"checkpoints/{VERSION}/_LATEST.json", b"{not json")
    with pytest.raises(RemoteCheckpointError, match="not JSON"):
        read_latest(bucket, VERSION)


# --- hostile pointer and manifest bytes (issue 22): RemoteCheckpointError, nothing else --------


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # RecursionError inside json.loads
    b'{"window": 1e400}',  # a float inf
    b'{"window": Infinity}',
    b'{"window": true}',
    b'{"window": 5.0}',
    b'{"window": -1}',
    b"\xff\xfe",
])
def test_hostile_latest_pointer_is_a_typed_error(tmp_path, raw):
    bucket = Bucket.open(f"file://{tmp_path}/bucket")
    bucket.put(f"checkpoints/{VERSION}/_LATEST.json", raw)
    with pytest.raises(RemoteCheckpointError):
        read_latest(bucket, VERSION)
    with pytest.raises(RemoteCheckpointError):
        fetch_checkpoint(bucket, VERSION, tmp_path / "dl")


SHA = "0" * 64


@pytest.mark.parametrize("files, reason", [
    ([{"path": ".", "size": 1, "sha256": SHA}], "bad manifest entry"),  # IsADirectoryError before
    ([{"path": "a/", "size": 1, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a//b", "size": 1, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a/./b", "size": 1, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a\0b", "size": 1, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a", "size": float("inf"), "sha256": SHA}], "non-standard JSON constant Infinity"),
    ([{"path": "a", "size": 1.0, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a", "size": True, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a", "size": 1 << 60, "sha256": SHA}], "bad manifest entry"),
    ([{"path": "a", "size": 1, "sha256": SHA + "\n"}], "bad manifest entry"),
    ([{"path": "a", "size": 1, "sha256": SHA}, {"path": "a/b", "size": 1, "sha256": SHA}],
     "also a folder"),  # NotADirectoryError / IsADirectoryError before
    ([{"path": "a", "size": 1, "sha256": SHA}, {"path": "a", "size": 1, "sha256": SHA}],
     "twice"),
])
def test_hostile_manifest_entries_are_rejected_before_any_download(tmp_path, files, reason):
    bucket = Bucket.open(f"file://{tmp_path}/bucket")
    manifest = {"format": 1, "version": VERSION, "window": 5, "files": files, "info": {}}
    bucket.put(f"checkpoints/{VERSION}/5/{MANIFEST}", json.dumps(manifest).encode())
    with pytest.raises(RemoteCheckpointError, match=reason):
        fetch_checkpoint(bucket, VERSION, tmp_path / "dl", window=5)
    assert not (tmp_path / "dl" / "5.partial").exists()
