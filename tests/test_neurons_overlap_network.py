"""Overlapped outer steps end to end (run config sparseloco.overlap): a LocalChain, file buckets,
one validator and four miners as real processes. Miner 3 is SIGKILLed mid-window and restarted
(it resumes from its local checkpoint); miner 4 joins late from the validator's checkpoint. Every
miner's global params must equal the validator's after every window: the global model depends
only on the published aggregates, whatever each miner trained while they were in flight."""

from __future__ import annotations

import os
import signal
import time

import pytest

from templar_jax.demo import network as netmod
from tests.local_network import FAST_OVERRIDES, build_network, events, finish, wait_for

pytestmark = pytest.mark.slow

WINDOWS = 9
OVERRIDES = [*FAST_OVERRIDES, "validator.checkpoint_interval_windows=3", "sparseloco.overlap=true"]


@pytest.fixture(scope="module")
def network_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("overlap") / "run"
    specs = netmod.plan_neurons(honest=3, copiers=0, noise=0)
    late = netmod.NeuronSpec("miner", "miner-4")
    specs.append(late)
    net, settings = build_network(run_dir, specs, OVERRIDES, WINDOWS)
    for spec in specs[:-1]:
        netmod.start(net, spec)
    try:
        wait_for(lambda: events(run_dir, "validator", "started"), 120, "validator start")
        start = events(run_dir, "validator", "started")[0]["start_window"]

        def scored(w):
            return any(e["window"] >= w for e in events(run_dir, "validator", "scores"))

        wait_for(lambda: scored(start + 1), 240, "window start+1 scored")
        time.sleep(settings.run.blocks_per_window * settings.run.block_time_s / 2)
        os.killpg(net.procs["miner-3"].pid, signal.SIGKILL)  # mid-window, its exchange in flight
        wait_for(lambda: scored(start + 2), 240, "window start+2 scored")  # its checkpoint is published
        netmod.start(net, specs[3])  # miner 3 comes back
        netmod.start(net, late)  # and miner 4 joins
        finish(net, settings)  # the validator's windows, then the miners' last one
    finally:
        netmod.stop_all(net)
    return run_dir, start


def test_every_miner_holds_the_validators_model_after_every_window(network_run):
    run_dir, start = network_run
    val = {e["window"]: e["params_digest"] for e in events(run_dir, "validator", "scores")}
    mine = events(run_dir, "miner", "window")
    compared = [e for e in mine if e["window"] in val]
    assert all(e["params_digest"] == val[e["window"]] for e in compared), \
        [(e["uid"], e["window"]) for e in compared if e["params_digest"] != val[e["window"]]]
    assert len(compared) >= 2 * (WINDOWS - 1) + 2
    assert len(set(val.values())) >= WINDOWS - 2  # and the model moved


def test_outer_steps_landed_while_the_next_window_trained(network_run):
    run_dir, _ = network_run
    overlapped = [e for e in events(run_dir, "miner", "window") if e.get("overlap")]
    assert len(overlapped) >= 2 * (WINDOWS - 2)
    assert all(e["comm_hidden_s"] > 0 for e in overlapped)
    lanes = {(e["phase"], e["lane"]) for e in events(run_dir, "miner", "phase")}
    assert {("train", "main"), ("land", "main"), ("upload", "comm"), ("gather", "comm"),
            ("outer_step", "comm")} <= lanes


def test_restarted_and_late_miners_rebuild_the_same_model(network_run):
    run_dir, start = network_run
    val = {e["window"]: e["params_digest"] for e in events(run_dir, "validator", "scores")}
    restarted = events(run_dir, "miner", "caught_up", uid=3)
    assert restarted and restarted[0]["resumed_from"] is not None  # from its local checkpoint
    joined = events(run_dir, "miner", "caught_up", uid=4)
    assert joined and joined[0]["checkpoint_window"] is not None
    for uid, caught in ((3, restarted[0]), (4, joined[0])):
        after = [e for e in events(run_dir, "miner", "window", uid=uid) if e["t"] > caught["t"]]
        assert len(after) >= 2, uid
        assert all(e["params_digest"] == val[e["window"]] for e in after), uid
