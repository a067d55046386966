"""The network simulator's engine: timing rules, overlap, churn, faults, speed."""

import dataclasses
import time

import pytest

from templar_jax.netsim import (Churn, Faults, Links, Overlap, Scenario, ScenarioError, StageCosts, StampRule,
                                Store, Timing, Work, costs_from_dict, simulate, summary)

GB = 10 ** 9


def costs(**over) -> StageCosts:
    vals = {"train_tokens_per_s": 1000.0, "train_step_overhead_s": 0.0, "compress_s_per_param": 0.0,
            "encode_s_per_param": 0.0, "decode_s_per_param": 0.0, "aggregate_s_per_param": 0.0, "apply_s": 1.0,
            "eval_s_per_token": 0.0, "store_request_s": 0.0, "host_tokens_per_s": 0.0, "aggregate_first_use_s": 0.0,
            "rebase_s_per_param": 0.0}
    vals.update(over)
    return costs_from_dict({k: {"value": v, "source": "test", "device": "test"} for k, v in vals.items()})


def scenario(**over) -> Scenario:
    # 10 steps of 1000 tokens at 1000 tok/s = 10 s compute in a 100 s window; 1 GB payload
    base = dict(work=Work("m", params=10 ** 9, payload_bytes=GB, tokens_per_step=1000, inner_steps=10),
                timing=Timing(window_s=100.0, upload_span_s=20.0, gather_timeout_s=30.0, gather_peers=4),
                links=Links(up_bps=8e9, down_bps=32e9, latency_s=0.0), peers=6, windows=6,
                store=Store(egress_bps=1e12, part_size=GB, parallel_parts=1))
    base.update(over)
    return Scenario(**base)


def test_phase_times_follow_the_links_and_costs():
    s = summary(simulate(scenario(), costs()))
    assert s["median_s"]["compute_s"] == pytest.approx(10.0)
    assert s["median_s"]["upload_s"] == pytest.approx(1.0)      # 8 Gbit at 8 Gbit/s
    assert s["median_s"]["download_s"] == pytest.approx(1.0)    # 4 sources share 32 Gbit/s
    assert s["median_s"]["comm_s"] == pytest.approx(3.0)        # upload + download + apply (1 s)
    assert s["utilization"] == pytest.approx(10 / 13)
    assert s["aggregated_peers_per_window"] == 4
    assert s["aggregated_tokens_per_window"] == 4 * 10 * 1000


def test_overlap_hides_download_then_upload():
    u = {ov: summary(simulate(scenario(overlap=ov), costs()))["utilization"] for ov in Overlap}
    assert u[Overlap.NONE] == pytest.approx(10 / 13)
    assert u[Overlap.AFTER_UPLOAD] == pytest.approx(10 / 12)
    # full: the next window's 10 steps end before W's exchange is ready (gather 20.3 s after W+1
    # starts): training waits for download (1 s) + aggregate (1 s); the upload window is the clock's.
    # The last window (5) has no next one to hide its upload behind (1 + 1 + 1 s)
    assert u[Overlap.FULL] == pytest.approx(50 / (50 + 4 * 2 + 3))


def test_full_overlap_lands_the_outer_step_after_k_inner_steps():
    # 50 steps of 1 s: W's outer step is ready 22.3 s into W+1 (upload window 20 s + 0.3 s margin,
    # download 1 s, aggregate 1 s) and lands before step 23; the training thread pays the rebase
    c = costs(rebase_s_per_param=0.5e-9)  # 0.5 s for 1e9 params
    res = simulate(scenario(overlap=Overlap.FULL, work=Work("m", 10 ** 9, GB, 1000, 50)), c)
    s = summary(res)
    assert s["median_landed_after_steps"] == 23
    assert s["median_s"]["land_s"] == pytest.approx(0.5) and s["median_s"]["comm_s"] == pytest.approx(0.5)
    assert s["median_s"]["compute_s"] == pytest.approx(50.0) and s["median_inner_steps"] == 50
    r = next(r for r in res.records if r.window == 2 and r.peer == 0)
    assert ("land", 200.0 + 23, 200.0 + 23.5) in r.segments  # window 1's landing, on window 2's training
    assert s["bottleneck"] == "landing (wait + rebase)"
    # the last window's exchange lands after its upload with no training left (the miner's end)
    last = [r for r in res.records if r.window == 5]
    assert {r.landed_after_steps for r in last} == {0}
    assert [r.land_s for r in last] == pytest.approx([3.0 + 0.5] * 6)  # upload, download, aggregate, rebase


def test_late_uploads_are_not_gathered_unless_the_store_stamps_the_start():
    slow = scenario(links=Links(up_bps=0.2e9, down_bps=32e9))  # 40 s upload > 20 s upload window
    s = summary(simulate(slow, costs()))
    assert s["late_uploads"] > 0 and s["aggregated_peers_per_window"] == 0
    assert s["bottleneck"] == "upload window (uploads late)"
    multipart = dataclasses.replace(slow, store=dataclasses.replace(slow.store, stamp=StampRule.INITIATION))
    assert summary(simulate(multipart, costs()))["aggregated_peers_per_window"] == 4


def test_slow_downloads_hit_the_gather_timeout():
    s = summary(simulate(scenario(links=Links(up_bps=8e9, down_bps=0.5e9)), costs()))  # 64 s per source
    assert s["gather_timeouts"] > 0 and s["median_s"]["download_s"] == pytest.approx(30.0)
    assert s["bottleneck"] == "gather timeout (download link)" and s["aggregated_peers_per_window"] == 0


def test_bucket_egress_is_shared_by_all_readers():
    sc = scenario(store=Store(egress_bps=7 * 8e9, part_size=GB, parallel_parts=1))  # 6 peers + 1 validator
    assert summary(simulate(sc, costs()))["median_s"]["download_s"] == pytest.approx(1.0)
    sc = dataclasses.replace(sc, peers=13)
    assert summary(simulate(sc, costs()))["median_s"]["download_s"] == pytest.approx(2.0)
    sc = dataclasses.replace(sc, peers=260)  # 37 s per payload > 30 s gather timeout
    assert summary(simulate(sc, costs()))["bottleneck"] == "gather timeout (bucket egress)"


def test_train_deadline_cuts_inner_steps():
    s = summary(simulate(scenario(work=Work("m", 10 ** 9, GB, 1000, 200)), costs()))
    assert s["median_inner_steps"] < 100 and s["bottleneck"] == "train deadline (steps cut)"


def test_processes_on_a_shared_host_split_its_throughput():
    c = costs(host_tokens_per_s=2000.0)  # the host does 2x one process alone
    assert summary(simulate(scenario(processes_per_host=6), c))["median_s"]["compute_s"] == pytest.approx(30.0)
    assert summary(simulate(scenario(processes_per_host=2), c))["median_s"]["compute_s"] == pytest.approx(10.0)
    assert summary(simulate(scenario(processes_per_host=6), costs()))["median_s"]["compute_s"] == pytest.approx(10.0)


def test_stragglers_failures_and_churn():
    s = summary(simulate(scenario(faults=Faults(straggler_fraction=1.0, straggler_slowdown=3.0)), costs()))
    assert s["median_s"]["compute_s"] == pytest.approx(30.0)
    res = simulate(scenario(faults=Faults(upload_failure=1.0)), costs())
    assert summary(res)["aggregated_peers_per_window"] == 0
    res = simulate(scenario(peers=10, windows=30, churn=Churn(leave_per_window=0.1, join_per_window=1.0,
                                                              catch_up_windows=2)), costs())
    joined = [r for r in res.records if r.peer >= 10]
    assert joined and joined[0].status == "catching_up"
    first = min(r.window for r in joined if r.peer == joined[0].peer)
    assert [r.status for r in joined if r.peer == joined[0].peer][:3] == ["catching_up", "catching_up", "ok"]
    assert first > 0
    left = {r.peer for r in res.records if r.window == 0} - {r.peer for r in res.records if r.window == 29}
    assert left


def test_validator_evaluation_must_fit_the_window():
    work = Work("m", 10 ** 9, GB, 1000, 10, eval_tokens_per_uid=1000, eval_uids=20)
    s = summary(simulate(scenario(work=work), costs(eval_s_per_token=0.01)))
    assert s["validator_eval_s"] == pytest.approx(6 * 1000 * 0.01)  # 6 peers evaluated
    s = summary(simulate(scenario(work=work, peers=20), costs(eval_s_per_token=0.01)))
    assert s["validator_eval_s"] == pytest.approx(200.0) and s["bottleneck"] == "validator evaluation"


def test_a_new_padded_peer_count_pays_the_first_use_once_per_peer():
    # applied counts 4, 3, 4, 2, 2, 1: buckets 4, 4, 4, 2, 2, 1 -> first uses in windows 0, 3 and 5
    res = simulate(scenario(applied=(4, 3, 4, 2, 2, 1)), costs(aggregate_first_use_s=5.0))
    for w, (gathered, agg) in enumerate([(4, 6.0), (3, 1.0), (4, 1.0), (2, 6.0), (2, 1.0), (1, 6.0)]):
        rows = [r for r in res.records if r.window == w]
        assert {r.gathered for r in rows} == {gathered}
        assert [r.aggregate_s for r in rows] == pytest.approx([agg] * len(rows)), w
    assert res.gather_sets[1] == res.gather_sets[0][:3]  # the first gather peers in the list's order
    # nothing applied: no aggregation to compile
    res = simulate(scenario(applied=(0, 0)), costs(aggregate_first_use_s=5.0))
    assert [r.aggregate_s for r in res.records if r.window < 2] == pytest.approx([1.0] * 12)


def test_bad_settings_name_the_field():
    with pytest.raises(ScenarioError, match="links.up_bps"):
        scenario(links=Links(up_bps=0, down_bps=1))
    with pytest.raises(ScenarioError, match="faults.upload_failure"):
        scenario(faults=Faults(upload_failure=2.0))
    with pytest.raises(ScenarioError, match="applied"):
        scenario(applied=(3, -1))


def test_hundred_peers_hundred_windows_in_seconds():
    t = time.perf_counter()
    res = simulate(scenario(peers=100, windows=100, timing=Timing(100.0, 20.0, 30.0)), costs())
    assert len(res.records) == 100 * 100
    assert time.perf_counter() - t < 5.0
