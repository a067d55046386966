"""from_run: a demo run folder's final model, rebuilt from the validator bucket's aggregator
objects, equals the outer steps applied directly; it is digest-checked against the validator's
event log and saved as a checkpoint that `templar-jax eval` reads."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from templar_jax.checkpoint import LocalCheckpoints
from templar_jax.cli import main
from templar_jax.evaluate import FINAL_CHECKPOINT_DIR, RunReplayError, from_run, load_for_eval
from templar_jax.model.params import flatten_params, unflatten_params
from templar_jax.protocol.aggregator_object import encode_aggregator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.config import load_run_config
from templar_jax.sparseloco import aggregate, sparseloco
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.keys import aggregator_key, start_window_key
from templar_jax.wire import decode, encode

START = 4
WINDOWS = (4, 5, 6)
UIDS = (1, 2)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run folder as the demo leaves it (validator bucket + validator events), built from real
    compressed payloads, plus the params expected after its last window."""
    run_dir = tmp_path_factory.mktemp("runs") / "r1"
    s = load_run_config("demo")
    model = GlobalModel(s, pad_id=None)
    theta = model.init_params()
    tx = sparseloco(beta=s.sparseloco.error_decay, topk=s.sparseloco.topk, chunk=s.sparseloco.chunk, batch_dims=model.batch_dims)
    bucket = Bucket.open(f"file://{(run_dir / 'buckets' / 'validator-0').resolve()}")
    bucket.put(start_window_key(s.run.version), json.dumps({"start_window": START}).encode())
    rng = np.random.default_rng(0)
    events = []
    for w in WINDOWS:
        raw = {}
        for uid in UIDS:
            delta = jax.tree.map(lambda p: rng.normal(0, 1e-2, p.shape).astype(np.float32), theta)
            payload, _ = tx.update(delta, tx.init(theta))
            raw[uid] = encode(jax.device_get(payload), {"window": w, "uid": uid, "global_step": 0,
                                                        "version": s.run.version}, expected=model.expected,
                              index_coding=s.sparseloco.wire_index_coding, chunk=s.sparseloco.chunk, topk=s.sparseloco.topk)
        bucket.put(aggregator_key(w, s.run.version), encode_aggregator(w, raw))
        # the outer step, directly: theta - alpha * aggregate(decoded payloads)
        decoded = [decode(raw[u], model.expected, chunk=s.sparseloco.chunk, topk=s.sparseloco.topk)[0] for u in UIDS]
        agg = flatten_params(aggregate(decoded, theta, rule=s.sparseloco.aggregation_rule, chunk=s.sparseloco.chunk,
                                       batch_dims=model.batch_dims))
        theta = unflatten_params({k: v - s.sparseloco.outer_lr * agg[k] for k, v in flatten_params(theta).items()})
        events.append({"t": float(w), "role": "validator", "uid": 0, "event": "scores", "window": w,
                       "uids": {}, "params_digest": model.params_digest(theta)})
    (run_dir / "events").mkdir()
    (run_dir / "events" / "validator-0.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return {"dir": run_dir, "expected": flatten_params(theta), "digest": events[-1]["params_digest"],
            "version": s.run.version}


def _copy(run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(run["dir"], dst, ignore=shutil.ignore_patterns(FINAL_CHECKPOINT_DIR))
    return dst


def _assert_params_equal(got, expected):
    got = flatten_params(got)
    assert set(got) == set(expected)
    for k in expected:
        np.testing.assert_allclose(np.asarray(got[k]), np.asarray(expected[k]), rtol=0, atol=1e-6, err_msg=k)


def test_from_run_rebuilds_and_saves_the_final_model(run, tmp_path):
    run_dir = _copy(run, tmp_path)
    built = from_run(run_dir)
    assert (built.step, built.start_window, built.windows_replayed) == (WINDOWS[-1], START, len(WINDOWS))
    assert built.digest_checked and built.params_digest == run["digest"]
    _assert_params_equal(built.params, run["expected"])
    with LocalCheckpoints(run_dir / FINAL_CHECKPOINT_DIR, max_to_keep=None, async_save=False) as c:
        restored = c.restore()
    assert restored.step == WINDOWS[-1] and restored.meta.extra["params_digest"] == run["digest"]
    assert restored.meta.extra["model_config"]["d_model"] == 128
    _assert_params_equal(restored.params, run["expected"])
    again = from_run(run_dir)  # same step and digest: the checkpoint is reused, nothing replayed
    assert again.params is None and again.digest_checked
    loaded = load_for_eval(run_dir)
    assert loaded.step == WINDOWS[-1] and loaded.seq_len == 128 and loaded.model_cfg.vocab_size == 4096


def test_digest_mismatch_is_an_error_unless_lenient(run, tmp_path):
    run_dir = _copy(run, tmp_path)
    log = run_dir / "events" / "validator-0.jsonl"
    log.write_text(log.read_text().replace(run["digest"], "0" * 32))
    with pytest.raises(RunReplayError, match="differs from the run's"):
        from_run(run_dir)
    assert main(["eval", str(run_dir)]) == 1  # the CLI reports it and exits 1
    assert not (run_dir / FINAL_CHECKPOINT_DIR).exists()
    built = from_run(run_dir, strict_digest=False)
    assert not built.digest_checked and built.params_digest == run["digest"]


def test_bad_run_folders_are_typed_errors(run, tmp_path):
    run_dir = _copy(run, tmp_path)
    with pytest.raises(RunReplayError, match=r"start_window_vother.*found \['start_window_vdemo.json'\]"):
        from_run(run_dir, overrides=["run.version=other"])
    with pytest.raises(RunReplayError, match="run config"):
        from_run(run_dir, overrides=["nosuch.key=1"])
    bucket = run_dir / "buckets" / "validator-0"
    last = bucket / aggregator_key(WINDOWS[-1], run["version"])
    last.write_bytes(last.read_bytes()[:-10])  # truncated object
    with pytest.raises(RunReplayError, match=f"window {WINDOWS[-1]}"):
        from_run(run_dir)
    (bucket / aggregator_key(WINDOWS[1], run["version"])).unlink()
    with pytest.raises(RunReplayError, match=rf"windows \[{WINDOWS[1]}\] are missing"):
        from_run(run_dir)
    with pytest.raises(RunReplayError, match="no validator bucket"):
        from_run(tmp_path / "empty")


def test_cli_eval_on_a_run_folder(run, tmp_path):
    run_dir = _copy(run, tmp_path)
    out = tmp_path / "eval.json"
    assert main(["eval", str(run_dir), "--batches", "1", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["step"] == WINDOWS[-1] and doc["version"] == "demo"
    assert doc["heldout"]["n_samples"] == 8 and doc["heldout"]["seq_len"] == 128
    assert 0 < doc["heldout"]["loss"] < 10 and doc["heldout"]["bits_per_byte"] > 0
    assert (run_dir / FINAL_CHECKPOINT_DIR / str(WINDOWS[-1])).is_dir()
