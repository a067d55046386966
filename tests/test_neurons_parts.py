"""Miner and Validator built from in-memory parts (no subprocess, no builder): a LocalChain on a
temporary SQLite file, file buckets, the demo's tiny GlobalModel. Checks the start window, peer
selection, that the validator and a miner apply the same update for a window, and the demo's
adversarial uploads as parts handed to the honest miner."""

import time
from types import SimpleNamespace

import numpy as np
import pytest

from templar_jax.chain import BlockNotProducedError
from templar_jax.chain.local import LocalChain
from templar_jax.config import load_run_config
from templar_jax.demo.behaviors import BehaviorError, CopyUpload, CorruptUpload, NoiseUpload, parse_behavior
from templar_jax.events import EventLog, read_all_events
from templar_jax.gauntlet import PeerRecord, ValidatorState, draw
from templar_jax.neurons.clock import WindowClock
from templar_jax.neurons.common import NeuronParts
from templar_jax.neurons.datasets import DataSets
from templar_jax.neurons.miner import Miner
from templar_jax.neurons.network import PeerDirectory, open_my_bucket, publish_access
from templar_jax.neurons.upload import Upload
from templar_jax.neurons.validator import Validator
from templar_jax.protocol.aggregator_object import decode_aggregator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.protocol.leader import PeerList, publish_peer_list, read_start_window
from templar_jax.storage.keys import aggregator_key, gradient_key
from templar_jax.wire import PayloadError
from templar_jax.wire.synthetic import random_payload

UPLOAD_SPAN_S = 2.0
OVERRIDES = ["peers.gather=2", "peers.reserve=1", f"peers.upload_window_s={UPLOAD_SPAN_S}",
             "run.resume_interval_windows=0"]
HOTKEYS = ["validator-0", "miner-1", "miner-2", "miner-3", "miner-4"]


@pytest.fixture(scope="module")
def cfg():
    return load_run_config("demo", OVERRIDES)


@pytest.fixture(scope="module")
def model(cfg):
    return GlobalModel(cfg, pad_id=None)


@pytest.fixture
def net(tmp_path, cfg, model):
    """A chain whose window 1 began 0.5 s ago (10 blocks of 1 s), uid 0 staked, every neuron's
    bucket committed; `net.parts(hotkey, role)` builds that neuron's parts."""
    path = tmp_path / "chain.sqlite"
    chain = LocalChain.create(path, block_time=1.0, blocks_per_window=10, genesis_time=time.time() - 10.5)
    for i, hk in enumerate(HOTKEYS):
        chain.register(hk, stake=1000.0 if i == 0 else 0.0)
    data = DataSets(train=SimpleNamespace(n_samples=256), heldout=None, pad_id=None)
    run_dir = tmp_path / "run"

    def parts(hotkey: str, role: str) -> NeuronParts:
        me = LocalChain(path, hotkey=hotkey)
        bucket, access = open_my_bucket(f"file://{tmp_path / 'buckets' / hotkey}")
        publish_access(me, access)
        uid = me.my_uid()
        return NeuronParts(cfg=cfg, hotkey=hotkey, uid=uid, run_dir=run_dir, chain=me, bucket=bucket,
                           peers=PeerDirectory(me), data=data, model=model,
                           clock=WindowClock(me, upload_span_s=UPLOAD_SPAN_S), events=EventLog(run_dir, role, uid))

    for hk in HOTKEYS:  # every neuron commits its bucket before anyone looks
        parts(hk, "miner" if hk != "validator-0" else "validator")
    return SimpleNamespace(parts=parts, run_dir=run_dir, chain=chain)


def _payload_bytes(model, uid, window, seed):
    payload = random_payload(np.random.default_rng(seed), model.expected, chunk=64, topk=64)
    return payload, model.codec.encode(payload, {"window": window, "uid": uid, "version": model.version})


def test_start_window_and_peer_selection(net, cfg):
    validator = Validator(net.parts("validator-0", "validator"))
    miner = Miner(net.parts("miner-2", "miner"))
    start = validator.ensure_start_window()
    assert start == net.chain.current_window() + 2 == 3
    assert validator.ensure_start_window() == start  # published once, then read back
    assert read_start_window(validator.bucket, cfg.run.version) == start
    assert miner.wait_start_window(timeout_s=5) == start
    assert miner.leader_bucket()[0] == validator.uid == 0

    miners, buckets = miner.peer_view()
    assert miners == [1, 2, 3, 4] and set(buckets) == {0, 1, 2, 3, 4}  # the staked validator is no miner
    assert miner.peer_list(5, miners) == PeerList(5, [1, 2], [3])  # no list yet: by uid
    publish_peer_list(validator.bucket, PeerList(5, [4, 2], [1]), cfg.run.version)
    assert miner.peer_list(4, miners) == PeerList(4, [1, 2], [3])
    assert miner.peer_list(6, miners) == PeerList(5, [4, 2], [1])
    assert miner.is_null_round(start + 1, start) and not miner.is_null_round(start + 2, start)


def test_validator_and_miner_apply_the_same_update(net, model):
    validator = Validator(net.parts("validator-0", "validator"))
    miner = Miner(net.parts("miner-2", "miner"))
    uploaders = {1: 11, 3: 13}  # uid 2 (gather peer) misses the window; reserve uid 3 fills in
    for uid, seed in uploaders.items():
        data = _payload_bytes(model, uid, 0, seed)[1]
        net.parts(HOTKEYS[uid], "miner").bucket.put(gradient_key(0, uid, model.version), data)
    theta0 = model.init_params()
    params_v = validator.process_window(theta0, 0, start=0)
    state = miner.step_window(miner.start_state(0, 0), 0, start=0)  # behind: gathers and applies only
    assert model.params_digest(state.params) == model.params_digest(params_v) != model.params_digest(theta0)

    events = read_all_events(net.run_dir)
    scores = next(e for e in events if e["event"] == "scores")
    assert scores["aggregated"] == [1, 3] and scores["uids"]["2"]["status"] == "missing"
    assert scores["uids"]["1"]["status"] == "ok" and scores["uids"]["1"]["gathered"]
    mine = next(e for e in events if e["event"] == "window")
    assert mine["gathered"] == [1, 3] and mine["status"] == "behind" and mine["behavior"] == "honest"
    assert mine["params_digest"] == scores["params_digest"]
    published = decode_aggregator(validator.bucket.get(aggregator_key(0, model.version)), window=0)
    assert sorted(published) == [1, 3]


def test_evaluation_seed_comes_from_a_block_after_the_upload_deadline(net):
    """Nobody can compute the evaluation seed while uploads are still accepted: its block is the
    first one at or after the upload window's close, and it is mixed with a secret in the run folder."""
    validator = Validator(net.parts("validator-0", "validator"))
    close = validator.clock.phases(0).upload_close
    asked = time.time()
    drawn = validator.eval_draw(0)
    assert asked < close <= time.time()  # asked while uploads were open: it waited for the deadline
    assert net.chain.block_timestamp(drawn.block) >= close
    assert drawn.block_hash == net.chain.block_hash(drawn.block)
    future = validator.clock.first_block(2)
    with pytest.raises(BlockNotProducedError):  # the next window's block does not exist yet
        net.chain.block_hash(future)
    secret = (net.run_dir / "validator-0-eval-secret").read_bytes()
    assert drawn == draw(secret, 0, drawn.block, drawn.block_hash, 0)  # auditable given the secret
    assert Validator(net.parts("validator-0", "validator")).eval_secret == secret  # same secret on restart


def test_a_recycled_uid_starts_over(net, model):
    validator = Validator(net.parts("validator-0", "validator"))
    strong = PeerRecord(mu=40.0, sigma=2.0, bma=0.9, final_score=3.0, banned_until=99)
    validator.state = ValidatorState(peers={1: strong, 2: strong}, hotkeys={1: "old-owner", 2: "miner-2"})
    validator.process_window(model.init_params(), 0, start=0)  # a null round: no scoring, same bookkeeping
    state = validator.state
    assert 1 not in state.peers and state.peers[2] == strong
    assert state.hotkeys[1] == "miner-1" and state.hotkeys[2] == "miner-2"


def test_behaviors_parse_to_uploads():
    assert type(parse_behavior("honest")) is Upload
    assert isinstance(parse_behavior("noise"), NoiseUpload)
    assert isinstance(parse_behavior("corrupt"), CorruptUpload)
    assert parse_behavior("copy:7").target == 7
    for text in ("honest", "noise", "corrupt", "copy:7"):
        assert str(parse_behavior(text)) == text
    for bad in ("copy", "copy:x", "noise:1", "evil", ""):
        with pytest.raises(BehaviorError, match="unknown behavior"):
            parse_behavior(bad)


def test_adversarial_uploads_around_the_honest_miner(net, model):
    miner = Miner(net.parts("miner-3", "miner"), upload=NoiseUpload())
    payload, honest = _payload_bytes(model, 3, 5, seed=1)
    meta = {"window": 5, "uid": 3, "version": model.version}
    assert Upload().prepare(miner, payload, meta) == honest
    assert Upload().finalize(miner, 5, 2, honest) == honest

    noise = NoiseUpload().prepare(miner, payload, meta)
    assert NoiseUpload().prepare(miner, payload, meta) == noise  # seeded by the miner's uid
    decoded = model.decode_payload(noise, window=5, uid=3)  # well formed ...
    assert decoded.keys() == payload.keys()
    assert any(not np.array_equal(np.asarray(decoded[n].idx), np.asarray(payload[n].idx)) for n in payload)

    corrupt = CorruptUpload().prepare(miner, payload, meta)
    assert len(corrupt) == len(honest) and corrupt != honest
    with pytest.raises(PayloadError):  # ... this one is not
        model.decode_payload(corrupt, window=5, uid=3)


def test_copier_re_signs_the_victims_payload(net, model):
    victim = net.parts("miner-1", "miner")
    copier = Miner(net.parts("miner-4", "miner"), upload=CopyUpload(1))
    assert CopyUpload(1).finalize(copier, 5, 2, b"own") is None  # nothing to copy (after span/2)
    payload, data = _payload_bytes(model, 1, 5, seed=3)
    victim.bucket.put(gradient_key(5, 1, model.version), data)
    copied = copier.upload.finalize(copier, 5, 2, b"own")
    out, meta = model.codec.decode(copied, expected_meta={"window": 5, "uid": 4, "version": model.version})
    assert meta["global_step"] == 2
    for name in payload:
        np.testing.assert_array_equal(np.asarray(out[name].idx), np.asarray(payload[name].idx))


def test_cli_rejects_an_unknown_behavior_before_joining(tmp_path, capsys):
    from templar_jax.cli import main

    rc = main(["miner", "--config", "demo", "--hotkey", "miner-9", "--run-dir", str(tmp_path),
               "--set", f"chain.network={tmp_path / 'no-chain.sqlite'}", "--behavior", "evil"])
    assert rc == 1 and "unknown behavior 'evil'" in capsys.readouterr().out
    assert not (tmp_path / "events").exists()  # nothing was built


def test_an_overflow_upload_is_counted_invalid_and_leaves_the_honest_update(net, model):
    """Issue 22's `overflow` adversary (side values finite, decoded values inf): the validator and
    the miners count it invalid at decode, and the update they apply is the honest peer's alone;
    handed to the aggregation directly, it is dropped there too."""
    from templar_jax.wire.synthetic import overflow_payload

    validator = Validator(net.parts("validator-0", "validator"))
    miner = Miner(net.parts("miner-2", "miner"))
    overflower = Miner(net.parts("miner-3", "miner"), upload=parse_behavior("overflow"))
    assert str(overflower.upload) == "overflow"
    honest, data = _payload_bytes(model, 1, 0, seed=11)
    net.parts("miner-1", "miner").bucket.put(gradient_key(0, 1, model.version), data)
    own = _payload_bytes(model, 3, 0, seed=13)[0]
    bad = overflower.upload.prepare(overflower, own, {"window": 0, "uid": 3, "version": model.version})
    with pytest.raises(PayloadError, match="overflows"):
        model.decode_payload(bad, window=0, uid=3)
    overflower.bucket.put(gradient_key(0, 3, model.version), bad)  # uid 3: the reserve for missing 2

    theta0 = model.init_params()
    params_v = validator.process_window(theta0, 0, start=0)
    state = miner.step_window(miner.start_state(0, 0), 0, start=0)
    want = model.params_digest(model.outer_step(theta0, [honest]))
    assert model.params_digest(params_v) == model.params_digest(state.params) == want
    assert model.params_digest(model.outer_step(theta0, [honest, overflow_payload(own)])) == want
    scores = next(e for e in read_all_events(net.run_dir) if e["event"] == "scores")
    assert scores["aggregated"] == [1] and scores["uids"]["3"]["status"] == "invalid"
    assert scores["uids"]["3"]["weight"] == 0.0


def test_a_running_validators_metrics_endpoint(net, model, cfg):
    """Run config `metrics.port=0`: the validator's window is scraped from its endpoint in the
    OpenMetrics format and read back with prometheus_client's parser."""
    from urllib.request import Request, urlopen

    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    from templar_jax.metrics import attach_exporters

    parts = net.parts("validator-0", "validator")
    exporters = attach_exporters(parts.events, cfg.with_overrides(["metrics.port=0"]), model=model.cfg,
                                 mesh=None, run_dir=net.run_dir)
    try:
        validator = Validator(parts)
        net.parts("miner-1", "miner").bucket.put(gradient_key(0, 1, model.version), _payload_bytes(model, 1, 0, 11)[1])
        validator.process_window(model.init_params(), 0, start=0)
        req = Request(exporters.server.url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        text = urlopen(req, timeout=10).read().decode()
    finally:
        exporters.close()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for family in text_string_to_metric_families(text) for s in family.samples}
    assert got[("templar_window", ())] == 0 and got[("templar_windows_total", (("status", "scored"),))] == 1
    assert got[("templar_gather_outcomes_total", (("outcome", "ok"), ("peer", "1")))] == 1
    assert got[("templar_peer_status", (("peer", "1"), ("status", "ok")))] == 1
    assert got[("templar_peer_status", (("peer", "2"), ("status", "missing")))] == 1
    assert got[("process_resident_memory_bytes", ())] > 0


def test_an_overlapped_miner_reads_the_chain_one_call_at_a_time(net):
    """Its training thread (clock) and comm thread (clock, peer view) share one chain wrapper."""
    import dataclasses

    from templar_jax.neurons.overlap import SerialChain

    parts = net.parts("miner-2", "miner")
    overlapped = load_run_config("demo", OVERRIDES + ["sparseloco.overlap=true"])
    miner = Miner(dataclasses.replace(parts, cfg=overlapped))
    assert isinstance(miner.chain, SerialChain) and miner.clock.chain is miner.chain is miner.peers.chain
    assert miner.peer_view()[0] == [1, 2, 3, 4] and miner.clock.current_window() == net.chain.current_window()
    assert not isinstance(Miner(net.parts("miner-3", "miner")).chain, SerialChain)  # synchronous: as it was
