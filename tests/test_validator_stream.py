"""The validator's window with every accepted payload spooled to disk and read back one tensor at
a time gives bit-identical results to holding every miner's decoded payload in memory: the
same scores, copy verdicts, aggregate (params digest) and published aggregator object."""

import dataclasses
import time

import numpy as np
import pytest

from templar_jax.chain.local import LocalChain
from templar_jax.config import load_run_config
from templar_jax.events import EventLog, read_all_events
from templar_jax.neurons.clock import WindowClock
from templar_jax.neurons.common import NeuronParts
from templar_jax.gauntlet.state import NEVER
from templar_jax.neurons.datasets import DataSets
from templar_jax.neurons.network import PeerDirectory, open_my_bucket, publish_access
from templar_jax.neurons.spool import SpooledPayload
from templar_jax.neurons.validator import Validator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.storage.keys import aggregator_key, gradient_key
from templar_jax.train.synthetic import RandomRows
from templar_jax.wire.synthetic import random_payload

UPLOAD_SPAN_S = 2.0
HOTKEYS = ["validator-0", "miner-1", "miner-2", "miner-3", "miner-4", "miner-5"]


@pytest.fixture(scope="module")
def model():
    cfg = load_run_config("demo", ["peers.gather=2", "peers.reserve=1", f"peers.upload_window_s={UPLOAD_SPAN_S}",
                                   "run.null_rounds=0", "run.resume_interval_windows=0", "peers.gather_in_flight=2"])
    return GlobalModel(cfg, pad_id=None)


def _validator(tmp_path, model, cfg=None):
    """(a factory of the validator's parts, every neuron's bucket by hotkey)."""
    cfg = cfg or model.run_config
    path = tmp_path / "chain.sqlite"
    chain = LocalChain.create(path, block_time=1.0, blocks_per_window=10, genesis_time=time.time() - 10.5)
    buckets = {}
    for i, hk in enumerate(HOTKEYS):
        chain.register(hk, stake=1000.0 if i == 0 else 0.0)
        me = LocalChain(path, hotkey=hk)
        buckets[hk], access = open_my_bucket(f"file://{tmp_path / 'buckets' / hk}")
        publish_access(me, access)
    me = LocalChain(path, hotkey="validator-0")
    data = DataSets(train=RandomRows(cfg.data.seq_len, model.cfg.vocab_size), heldout=None, pad_id=None)
    run_dir = tmp_path / "run"
    parts = lambda: NeuronParts(  # noqa: E731
        cfg=cfg, hotkey="validator-0", uid=0, run_dir=run_dir, chain=me, bucket=buckets["validator-0"],
        peers=PeerDirectory(me), data=data, model=model,
        clock=WindowClock(me, upload_span_s=UPLOAD_SPAN_S), events=EventLog(run_dir, "validator", 0))
    return parts, buckets


def test_spooled_window_equals_the_in_memory_window(tmp_path, model):
    parts, buckets = _validator(tmp_path, model)
    payloads = {uid: random_payload(np.random.default_rng(uid), model.expected) for uid in (1, 2, 3, 4)}
    payloads[5] = payloads[2]  # uid 5 copies uid 2, uploading after it
    for uid, payload in payloads.items():
        data = model.codec.encode(payload, {"window": 0, "uid": uid, "version": model.version})
        buckets[HOTKEYS[uid]].put(gradient_key(0, uid, model.version), data)
        time.sleep(0.01)
    theta0 = model.init_params()
    streamed, in_memory = Validator(parts()), Validator(parts())  # one secret, one fresh state

    seen = []
    orig_score = streamed._score

    applied = []

    def score(theta, window, miners, gathered, train):
        seen.append(gathered.payloads.valid)
        applied.extend(dict(p) for p in gathered.applied)  # decoded in memory: the miners' path below
        return orig_score(theta, window, miners, gathered, train)

    streamed._score = score
    params_streamed = streamed.process_window(theta0, 0, start=0)
    published_streamed = streamed.bucket.get(aggregator_key(0, model.version))
    assert all(isinstance(p, SpooledPayload) for p in seen[0].values()) and sorted(seen[0]) == [1, 2, 3, 4, 5]
    assert not streamed.spool.root.exists()  # the window's files are gone once it is done

    # the reference: every payload decoded in memory (no spool), on the same evaluation draw
    gather = in_memory.gather
    in_memory.gather = lambda *a, spool=None, **kw: gather(*a, **kw)
    in_memory.eval_draw = lambda window: next(d for d in streamed.state.eval_draws if d.window == window)
    params_memory = in_memory.process_window(theta0, 0, start=0)

    assert streamed.state == in_memory.state
    assert model.params_digest(params_streamed) == model.params_digest(params_memory) != model.params_digest(theta0)
    # the validator aggregates one peer at a time; a miner stacks the peers: the same bits
    assert len(applied) == 2 and model.params_digest(model.outer_step(theta0, applied)) == model.params_digest(params_streamed)
    assert published_streamed == in_memory.bucket.get(aggregator_key(0, model.version))
    phases = [(e["phase"], e["window"]) for e in read_all_events(tmp_path / "run")
              if e["event"] == "phase" and e["role"] == "validator"]
    assert phases == [(f"validator_{p}", 0) for p in ("gather", "score", "outer_step", "publish", "report")] * 2
    rec = streamed.state.peers
    assert rec[5].final_score == 0.0 and rec[5].banned_until > 0  # the copier was caught either way
    assert all(rec[u].loss_score != 0.0 for u in (1, 2, 3, 4))  # and everyone was evaluated


def test_an_evaluation_budget_skips_the_uids_that_no_longer_fit_and_copies_are_caught_from_sketches(
        tmp_path, model):
    cfg = model.run_config
    tight = dataclasses.replace(cfg, validator=dataclasses.replace(cfg.validator, eval_budget_s=1e-6,
                                                                   copy_sketch_chunks=16))
    parts, buckets = _validator(tmp_path, model, tight)
    for uid in (1, 2, 3, 5):  # 5 copies 2 (caught from sketches of 16 chunk rows per tensor)
        data = model.codec.encode(random_payload(np.random.default_rng(2 if uid == 5 else uid), model.expected),
                                  {"window": 0, "uid": uid, "version": model.version})
        buckets[HOTKEYS[uid]].put(gradient_key(0, uid, model.version), data)
        time.sleep(0.01)
    validator = Validator(parts())
    validator.process_window(model.init_params(), 0, start=0)
    scores = next(e for e in read_all_events(tmp_path / "run") if e["event"] == "scores")
    evaluated = [int(u) for u, rec in scores["uids"].items() if rec["evaluated"]]
    skipped = {int(u): reason for u, reason in scores["eval_skipped"].items()}
    assert len(skipped) == 3 and set(skipped) < {1, 2, 3, 5}  # 4 sent nothing: missing, never skipped
    assert all(r.startswith("evaluation time budget: ") for r in skipped.values())
    assert sorted(evaluated) == sorted({1, 2, 3, 4, 5} - set(skipped))
    (scored,) = {1, 2, 3, 5} - set(skipped)
    peers = validator.state.peers
    assert peers[scored].last_eval_window == 0 and peers[scored].loss_score != 0.0
    for uid in set(skipped) - {5}:  # untouched: as if not drawn, so the next draw favours them
        assert uid not in peers or (peers[uid].last_eval_window == NEVER and peers[uid].loss_score == 0.0)
    assert scores["uids"]["5"]["status"] in ("copy:ban", "banned") and peers[5].banned_until > 0


def test_a_slow_debug_object_counts_in_the_budget_spent_but_not_as_the_time_of_every_evaluation(
        tmp_path, model, monkeypatch):
    """The debug object is read from the peer's own bucket, so its latency is the peer's choice:
    one slow read used to set the 'slowest evaluation' and skip every uid after it."""
    import types

    from templar_jax.neurons import validator as validator_module

    cfg = model.run_config
    budget = dataclasses.replace(cfg, validator=dataclasses.replace(cfg.validator, eval_budget_s=15.0))
    parts, buckets = _validator(tmp_path, model, budget)
    for uid in (1, 2, 3, 4):
        data = model.codec.encode(random_payload(np.random.default_rng(uid), model.expected),
                                  {"window": 0, "uid": uid, "version": model.version})
        buckets[HOTKEYS[uid]].put(gradient_key(0, uid, model.version), data)
    validator = Validator(parts())
    clock = [0.0]  # the evaluations themselves take no time on this clock; the first debug read takes 10 s
    monkeypatch.setattr(validator_module, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time))

    def slow_first_read(uid, window, val_sample):
        clock[0] += 10.0 if clock[0] == 0.0 else 0.0
        return None

    validator._steps_behind = slow_first_read
    validator.process_window(model.init_params(), 0, start=0)
    scores = next(e for e in read_all_events(tmp_path / "run") if e["event"] == "scores")
    assert clock[0] == 10.0 and scores["eval_skipped"] == {}
    evaluated = sorted(int(u) for u, rec in scores["uids"].items() if rec["evaluated"])
    assert evaluated == [1, 2, 3, 4, 5]  # 5 sent nothing: drawn, missing
    assert all(validator.state.peers[u].last_eval_window == 0 for u in (1, 2, 3, 4))


def test_a_window_that_fails_after_the_gather_leaves_no_spooled_payloads(tmp_path, model):
    parts, buckets = _validator(tmp_path, model)
    for uid in (1, 2):
        data = model.codec.encode(random_payload(np.random.default_rng(uid), model.expected),
                                  {"window": 0, "uid": uid, "version": model.version})
        buckets[HOTKEYS[uid]].put(gradient_key(0, uid, model.version), data)
    validator = Validator(parts())
    spooled = []

    def fail(theta, window, miners, gathered, train):
        spooled.extend(p.path for p in gathered.payloads.valid.values())
        raise RuntimeError("scoring failed")

    validator._score = fail
    with pytest.raises(RuntimeError, match="scoring failed"):
        validator.process_window(model.init_params(), 0, start=0)
    assert len(spooled) == 2 and not any(p.exists() for p in spooled)
    assert not validator.spool.root.exists()


def test_a_checkpoint_due_is_saved_in_the_window_and_uploaded_in_the_background(tmp_path, model, monkeypatch):
    import threading

    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from templar_jax.checkpoint import publisher as publisher_module
    from templar_jax.checkpoint.bootstrap import bootstrap_from_bucket
    from templar_jax.checkpoint.local import abstract_target
    from templar_jax.checkpoint.remote import read_latest
    from templar_jax.model.sharding import make_mesh

    cfg = model.run_config
    every = dataclasses.replace(cfg, validator=dataclasses.replace(cfg.validator, checkpoint_interval_windows=1))
    parts, buckets = _validator(tmp_path, model, every)
    for uid in (1, 2):
        data = model.codec.encode(random_payload(np.random.default_rng(uid), model.expected),
                                  {"window": 0, "uid": uid, "version": model.version})
        buckets[HOTKEYS[uid]].put(gradient_key(0, uid, model.version), data)
    release, upload = threading.Event(), publisher_module.publish_checkpoint

    def held_upload(*args, **kwargs):  # a slow bucket: the upload waits until released
        assert release.wait(60)
        return upload(*args, **kwargs)

    monkeypatch.setattr(publisher_module, "publish_checkpoint", held_upload)
    validator = Validator(parts())
    params = validator.process_window(model.init_params(), 0, start=0)
    assert validator.publisher.busy and read_latest(validator.bucket, model.version) is None  # the window went on
    assert validator.ckpts.step_dir(0).is_dir()  # saved locally inside the window
    release.set()
    validator.publisher.close()
    assert validator.publisher.failures == 0 and read_latest(validator.bucket, model.version)["window"] == 0
    target = abstract_target(params, NamedSharding(make_mesh("fsdp=1", jax.devices()[:1]), PartitionSpec()))
    restored = bootstrap_from_bucket(validator.bucket, model.version, tmp_path / "joiner", target=target)
    assert restored.meta.window == 0 and restored.meta.global_step == 1
    assert model.params_digest(restored.params) == model.params_digest(params)
