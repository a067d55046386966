"""End to end: a LocalChain, file buckets, one validator and six miners as real processes.

Honest miners 1-3, a copier of uid 1 (4), a noise uploader (5), a corrupt uploader (6) and a
late joiner (7). Miner 3 is SIGKILLed mid-window and restarted later (it resumes from its local
checkpoint); the validator is SIGKILLed and restarted; miner 7 joins late from the validator's
published checkpoint. The tests then check from the event logs that the protocol held.
"""

from __future__ import annotations

import signal
import os
import time
from pathlib import Path

import pytest

from templar_jax.demo import network as netmod
from tests.local_network import FAST_OVERRIDES, build_network, events, finish, wait_for

pytestmark = pytest.mark.slow

WINDOWS = 9
OVERRIDES = [*FAST_OVERRIDES, "validator.checkpoint_interval_windows=3"]


@pytest.fixture(scope="module")
def network_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    specs = netmod.plan_neurons(honest=3, copiers=1, noise=1, corrupt=1)
    late = netmod.NeuronSpec("miner", "miner-7")
    specs.append(late)
    net, settings = build_network(run_dir, specs, OVERRIDES, WINDOWS)
    for spec in specs[:-1]:
        netmod.start(net, spec)
    try:
        started = wait_for(lambda: events(run_dir, "validator", "started"), 120, "validator start")
        start = started[0]["start_window"]

        def scored(w):
            return any(e["window"] >= w for e in events(run_dir, "validator", "scores"))

        # miner 3 dies in the middle of window start+3
        wait_for(lambda: scored(start + 2), 240, "window start+2 scored")
        time.sleep(settings.run.blocks_per_window * settings.run.block_time_s / 2)
        os.killpg(net.procs["miner-3"].pid, signal.SIGKILL)
        # the validator dies after scoring start+4 and comes back
        wait_for(lambda: scored(start + 4), 240, "window start+4 scored")
        os.killpg(net.procs["validator-0"].pid, signal.SIGKILL)
        net.procs["validator-0"].wait()
        time.sleep(3)
        netmod.start(net, specs[0])
        netmod.start(net, specs[3])  # miner-3 comes back
        netmod.start(net, late)  # and miner 7 joins
        finish(net, settings)  # the validator's windows, then the miners' last one
    finally:
        netmod.stop_all(net)
    return run_dir, start


def test_all_miners_apply_the_same_update_as_the_validator(network_run):
    run_dir, start = network_run
    val = {e["window"]: e["params_digest"] for e in events(run_dir, "validator", "scores")}
    compared = 0
    for ev in events(run_dir, "miner", "window"):
        if ev["window"] in val:
            assert ev["params_digest"] == val[ev["window"]], (ev["uid"], ev["window"])
            compared += 1
    assert compared >= 4 * (WINDOWS - 2)
    # and the model actually moved
    assert len({d for d in val.values()}) >= WINDOWS - 2


def test_held_out_loss_falls(network_run):
    run_dir, _ = network_run
    series = [(e["window"], e["heldout_loss"]) for e in events(run_dir, "validator", "scores")]
    series.sort()
    assert series[-1][1] < series[0][1] - 0.2, series


def test_adversaries_end_below_every_surviving_honest_miner(network_run):
    run_dir, _ = network_run
    last = max(events(run_dir, "validator", "scores"), key=lambda e: e["window"])["uids"]
    honest = [last[str(u)]["weight"] for u in (1, 2)]  # miner 3 was killed mid-run
    for bad in (4, 5, 6):
        assert last[str(bad)]["weight"] < min(honest), (bad, last)
    assert min(honest) > 0
    assert last["4"]["status"] in ("banned", "copy:ban")


def test_corrupt_payload_is_rejected_slashed_and_never_applied(network_run):
    run_dir, start = network_run
    scores = events(run_dir, "validator", "scores")
    assert all(6 not in e["aggregated"] for e in scores)
    assert all(6 not in e["gathered"] for e in events(run_dir, "miner", "window"))
    statuses = [e["uids"]["6"]["status"] for e in scores if e["window"] > start]
    # whenever its payload was there it was rejected, never scored; on a loaded 2-core machine
    # an upload can also miss a window's deadline ("missing": nothing to apply either; one CI
    # run saw that once while the other pytest worker ran kernel tests)
    assert statuses and set(statuses) <= {"invalid", "missing"}, statuses
    assert statuses.count("invalid") >= len(statuses) - 2, statuses
    assert scores[-1]["uids"]["6"]["final"] <= 0.0


def test_killed_miner_does_not_stop_the_others_and_resumes(network_run):
    run_dir, start = network_run
    last_w = start + WINDOWS - 1
    for uid in (1, 2, 4, 5, 6):
        windows = {e["window"] for e in events(run_dir, "miner", "window", uid=uid)}
        assert set(range(start + 1, last_w + 1)) <= windows, (uid, sorted(windows))
    windows3 = sorted(e["window"] for e in events(run_dir, "miner", "window", uid=3))
    assert last_w in windows3 and len(windows3) < WINDOWS  # a gap while it was dead
    caught = events(run_dir, "miner", "caught_up", uid=3)
    assert caught and caught[0]["resumed_from"] is not None  # from its local checkpoint


def test_late_joiner_is_bit_identical_after_bootstrap(network_run):
    run_dir, start = network_run
    caught = events(run_dir, "miner", "caught_up", uid=7)
    assert caught and caught[0]["checkpoint_window"] is not None and caught[0]["skipped"] == 0
    val = {e["window"]: e["params_digest"] for e in events(run_dir, "validator", "scores")}
    mine = events(run_dir, "miner", "window", uid=7)
    assert len(mine) >= 2
    assert all(e["params_digest"] == val[e["window"]] for e in mine)


def test_validator_restart_resumes_its_state(network_run):
    run_dir, start = network_run
    assert len(events(run_dir, "validator", "started")) == 2
    restarted = events(run_dir, "validator", "started")[1]
    assert restarted["window"] > start + 1  # resumed past what it had scored, not from scratch
    windows = sorted({e["window"] for e in events(run_dir, "validator", "scores")})
    assert windows == list(range(start, start + WINDOWS))
    state = (Path(run_dir) / "validator-0-state.json").read_text()
    assert f'"window": {start + WINDOWS - 1}' in state.replace("\n", " ") or f'"window":{start + WINDOWS - 1}' in state
