"""Checkpoint uploads in the background (checkpoint/publisher.py): a published checkpoint is
complete and restorable, uploads run one at a time in order, a failed upload is logged and the
next goes on, and close() waits for the last upload."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from templar_jax.checkpoint.bootstrap import bootstrap_from_bucket, save_checkpoint
from templar_jax.checkpoint.local import LocalCheckpoints, abstract_target
from templar_jax.checkpoint.publisher import CheckpointPublisher, PublisherClosed
from templar_jax.checkpoint.remote import read_latest, remote_windows
from templar_jax.model.sharding import make_mesh
from templar_jax.storage import Bucket

VERSION = "p1"


def _params(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"embed": {"embedding": rng.standard_normal((16, 8)).astype(np.float32)},
            "layers": {"w": rng.standard_normal((2, 8, 8)).astype(np.float32)}}


def _restored(bucket, dest, like):
    target = abstract_target(like, NamedSharding(make_mesh("fsdp=1", jax.devices()[:1]), P()))
    return bootstrap_from_bucket(bucket, VERSION, dest, target=target)


class _Gated:
    """A bucket whose uploads wait until `gate` is set, counting the objects written."""

    def __init__(self, bucket):
        self._bucket, self.gate, self.writes = bucket, threading.Event(), []

    def __getattr__(self, name):
        return getattr(self._bucket, name)

    async def aput(self, key, data):
        assert self.gate.wait(30)
        self.writes.append(key)
        await self._bucket.aput(key, data)

    async def aput_file(self, key, path):
        await self.aput(key, Path(path).read_bytes())

    def put(self, key, data):
        assert self.gate.wait(30)
        self.writes.append(key)
        self._bucket.put(key, data)


class _FailOnce:
    """A bucket whose first upload fails (storage trouble), later ones go through."""

    def __init__(self, bucket):
        self._bucket, self.failed = bucket, False

    def __getattr__(self, name):
        return getattr(self._bucket, name)

    async def aput(self, key, data):
        if not self.failed:
            self.failed = True
            raise OSError("simulated outage")
        await self._bucket.aput(key, data)

    async def aput_file(self, key, path):
        await self.aput(key, Path(path).read_bytes())


def test_uploads_in_the_background_in_order_and_the_checkpoint_restores(tmp_path):
    bucket = _Gated(Bucket.open(f"file://{tmp_path}/bucket"))
    ckpts = LocalCheckpoints(tmp_path / "local", max_to_keep=2)
    publisher = CheckpointPublisher(bucket, VERSION, keep=1)
    step = save_checkpoint(ckpts, version=VERSION, window=3, params=_params(3), global_step=4)
    first = publisher.submit(3, step, global_step=4)
    assert publisher.busy and not first.done() and bucket.writes == []  # the caller did not wait

    second_submitted = threading.Event()

    def submit_next():  # waits for the first upload before it starts the next
        publisher.submit(5, save_checkpoint(ckpts, version=VERSION, window=5, params=_params(5), global_step=6),
                         global_step=6)
        second_submitted.set()

    t = threading.Thread(target=submit_next)
    t.start()
    assert not second_submitted.wait(0.5)  # the first upload still holds it
    bucket.gate.set()
    t.join(30)
    assert first.result(30)["window"] == 3 and second_submitted.is_set()
    publisher.close()  # drains the second
    assert not publisher.busy and publisher.failures == 0 and publisher.last_pointer["window"] == 5
    assert read_latest(bucket, VERSION)["window"] == 5 and read_latest(bucket, VERSION)["info"] == {"global_step": 6}
    assert remote_windows(bucket, VERSION) == [5]  # keep=1 pruned window 3 after the pointer moved
    restored = _restored(bucket, tmp_path / "joiner", _params(5))
    assert restored.meta.window == 5 and restored.meta.global_step == 6
    for a, b in zip(jax.tree.leaves(restored.params), jax.tree.leaves(_params(5))):
        np.testing.assert_array_equal(np.asarray(a), b)
    ckpts.close()


def test_a_failed_upload_is_logged_and_the_next_one_goes_on(tmp_path, caplog):
    bucket = _FailOnce(Bucket.open(f"file://{tmp_path}/bucket"))
    ckpts = LocalCheckpoints(tmp_path / "local", max_to_keep=2)
    with caplog.at_level(logging.ERROR, logger="templar_jax.checkpoint.publisher"):
        with CheckpointPublisher(bucket, VERSION) as publisher:
            publisher.submit(1, save_checkpoint(ckpts, version=VERSION, window=1, params=_params(1), global_step=1),
                             global_step=1)
            assert publisher.wait() is None and publisher.failures == 1
            assert read_latest(bucket, VERSION) is None  # no pointer to a half-uploaded checkpoint
            publisher.submit(2, save_checkpoint(ckpts, version=VERSION, window=2, params=_params(2), global_step=2),
                             global_step=2)
    assert "checkpoint window 1: upload failed" in caplog.text and "simulated outage" in caplog.text
    assert publisher.failures == 1 and read_latest(bucket, VERSION)["window"] == 2
    assert _restored(bucket, tmp_path / "joiner", _params(2)).meta.window == 2
    ckpts.close()


def test_close_waits_for_the_upload_in_flight_and_refuses_later_ones(tmp_path):
    bucket = _Gated(Bucket.open(f"file://{tmp_path}/bucket"))
    ckpts = LocalCheckpoints(tmp_path / "local")
    publisher = CheckpointPublisher(bucket, VERSION)
    publisher.submit(7, save_checkpoint(ckpts, version=VERSION, window=7, params=_params(7), global_step=8),
                     global_step=8)
    threading.Timer(0.3, bucket.gate.set).start()
    publisher.close()
    assert read_latest(bucket, VERSION)["window"] == 7  # complete before close returned
    publisher.close()  # idempotent
    with pytest.raises(PublisherClosed, match="window 9 submitted after close"):
        publisher.submit(9, ckpts.step_dir(7), global_step=10)
    ckpts.close()


def test_the_upload_thread_uses_process_0s_own_bucket_never_the_agreed_one(tmp_path):
    from templar_jax.multihost.agree import SoloAgreement
    from templar_jax.multihost.bucket import AgreedBucket, local_bucket
    from templar_jax.multihost.errors import MultihostError

    plain = Bucket.open(f"file://{tmp_path}/bucket")
    assert local_bucket(plain) is plain
    assert local_bucket(AgreedBucket(plain, SoloAgreement(), "validator")) is plain

    class Follower(SoloAgreement):
        leader, process_index = False, 1

    with pytest.raises(MultihostError, match="process 1 cannot open it itself"):
        local_bucket(AgreedBucket(None, Follower(), "validator"))
