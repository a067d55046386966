"""The adversary gallery's uploads (issue 22) on a stand-in miner: what each one sends."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from templar_jax.config import load_run_config
from templar_jax.data import miner_pool, trained_indices, validator_random_indices
from templar_jax.demo import behavior_names, behaviors
from templar_jax.demo.network import plan_neurons
from templar_jax.gauntlet import payload_overlap
from templar_jax.protocol.aggregator_object import encode_aggregator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.sparseloco import compress_dense
from templar_jax.sparseloco.tree import flatten
from templar_jax.storage.keys import aggregator_key
from templar_jax.storage.timing import UploadWindow
from templar_jax.wire.synthetic import random_payload

@pytest.fixture(scope="module")
def model():
    return GlobalModel(load_run_config("demo", []), pad_id=None)


def view(model, uid=5, leader=None, upload_end=None):
    clock = SimpleNamespace(upload_span_s=2.0,
                            upload_window=lambda w: UploadWindow(time.time() - 1, upload_end or time.time()))
    return SimpleNamespace(uid=uid, model=model, cfg=model.run_config, clock=clock,
                           data=SimpleNamespace(train=SimpleNamespace(n_samples=256)),
                           leader_bucket=lambda: (0, leader))


def payload(model, seed):
    return random_payload(np.random.default_rng(seed), model.expected, chunk=model.codec.chunk, topk=model.codec.topk)


def encoded(model, p, window, uid, global_step=3):
    return model.codec.encode(p, {"window": window, "uid": uid, "version": model.version, "global_step": global_step})


def test_every_named_behavior_parses_and_the_names_match_the_uploads():
    assert set(behaviors.SIMPLE) == set(behavior_names.SIMPLE)
    assert set(behaviors.TARGETED) == set(behavior_names.TARGETED)
    for text in (*behavior_names.SIMPLE, "copy:1", "copy-perturb:1", *behavior_names.GALLERY):
        assert str(behaviors.parse_behavior(text)) == text
    with pytest.raises(behaviors.BehaviorError, match="copy-perturb:UID"):
        behaviors.parse_behavior("copy-perturb")
    specs = plan_neurons(2, 0, 0, adversaries=behavior_names.GALLERY)
    assert [s.behavior for s in specs[3:]] == list(behavior_names.GALLERY)
    with pytest.raises(behaviors.BehaviorError):
        plan_neurons(2, 0, 0, adversaries=["evil"])


def test_perturbed_copy_moves_an_eighth_of_the_sparse_indices_and_stays_valid(model):
    p = payload(model, 1)
    sizes = behaviors.chunk_sizes(view(model))
    out = behaviors.perturbed_payload(p, sizes, np.random.default_rng(0), 1 / 8)
    model.codec.decode(encoded(model, out, 4, 5))  # well formed
    for name, tp in p.items():
        k = tp.idx.shape[-1]
        shared = payload_overlap({name: tp}, {name: out[name]})
        assert shared == (1.0 if k == sizes[name] else 1 - 1 / 8), name  # chunks sent whole cannot move
        assert not np.array_equal(np.asarray(tp.lut), np.asarray(out[name].lut))


def test_evaltrain_trains_on_the_predictable_draw_not_its_assigned_data(model):
    cfg = model.run_config
    inner, n = cfg.inner, cfg.validator.eval_sequences
    rows = trained_indices(miner_pool(5, 7, 256, inner.steps, inner.target_batch), inner.steps, inner.batch)
    got = behaviors.EvalDataUpload().training_rows(view(model), 7, rows)
    assert got.shape == rows.shape and got.dtype == np.int64
    assert set(got.ravel()) == set(validator_random_indices(7, 256, validator_seed=0, n=n))
    assert behaviors.Upload().training_rows(view(model), 7, rows) is rows


def test_freeride_uploads_the_freshest_published_aggregate(model):
    a, b = payload(model, 2), payload(model, 3)
    objects = {aggregator_key(5, model.version): encode_aggregator(5, {1: encoded(model, a, 5, 1),
                                                                       2: encoded(model, b, 5, 2)})}
    leader = SimpleNamespace(get=lambda key: objects[key])
    rider, me = behaviors.FreeRideUpload(), view(model, leader=leader)
    own = payload(model, 4)
    assert rider.finalize(me, 8, 3, encoded(model, own, 8, 5)) is None  # neither 7's nor 6's is there
    sent = rider.finalize(me, 7, 3, encoded(model, own, 7, 5))  # 6's is not there: 5's
    out, got_meta = model.codec.decode(sent, expected_meta={"window": 7, "uid": 5, "version": model.version})
    assert got_meta["global_step"] == 3
    dense = model.aggregate([a, b], model.shapes_flat)
    want = compress_dense(flatten(dense), topk=model.codec.topk, chunk=model.codec.chunk, batch_dims=model.batch_dims)
    assert payload_overlap(out, want) == 1.0 and payload_overlap(out, own) < 0.5


def test_replay_sends_its_first_real_payload_forever(model):
    replay, me = behaviors.ReplayUpload(), view(model)
    null_rounds = model.run_config.run.null_rounds
    sent = {}
    for step in range(null_rounds + 3):
        p = payload(model, 10 + step)
        sent[step] = (p, replay.finalize(me, 10 + step, step, encoded(model, p, 10 + step, 5, step)))
    first_real = sent[null_rounds][0]
    for step, (own, data) in sent.items():
        out, meta = model.codec.decode(data, expected_meta={"window": 10 + step, "uid": 5})
        assert meta["global_step"] == step
        assert payload_overlap(out, own if step <= null_rounds else first_real) == 1.0


def test_late_uploads_only_after_the_upload_window_closed(model):
    end = time.time() + 0.3
    assert behaviors.LateUpload().finalize(view(model, upload_end=end), 3, 1, b"x") == b"x"
    assert time.time() > end
