"""Neuron metrics: event records from a recorded demo run (tests/data/dashboard_run) through a real
EventLog into the Prometheus endpoint, scraped over HTTP in the OpenMetrics format and parsed with
prometheus_client's own parser; W&B logging with a stand-in module."""

import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from templar_jax.config import load_run_config
from templar_jax.events import EventLog, read_events
from templar_jax.metrics import NeuronMetrics, WandbSink, attach_exporters, read_endpoints, reason_kind
from templar_jax.metrics.memory import DeviceMemoryCollector
from templar_jax.model.config import load_model_config

RUN = Path(__file__).parent / "data" / "dashboard_run" / "events"
HEADER = ("t", "role", "uid", "event")


def replay(log: EventLog, path: Path) -> list[dict]:
    """Emit a recorded neuron's events again through `log` (so its sinks see them as live)."""
    records = list(read_events(path))
    for r in records:
        log.emit(r["event"], **{k: v for k, v in r.items() if k not in HEADER})
    return records


def scrape(url: str) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} from an OpenMetrics scrape of `url`."""
    req = urllib.request.Request(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def served(tmp_path):
    """Exporters attached from a run config with metrics.port=0, closed after the test."""
    made = []

    def attach(role: str, uid: int, *overrides: str):
        cfg = load_run_config("demo", ["metrics.port=0", *overrides])
        log = EventLog(tmp_path, role, uid)
        made.append(attach_exporters(log, cfg, model=load_model_config(cfg.model.preset), mesh=None,
                                     run_dir=tmp_path))
        return cfg, log, made[-1]

    yield attach
    for exporters in made:
        exporters.close()


def test_validator_endpoint_serves_scores_weights_and_status(served, tmp_path):
    _, log, exporters = served("validator", 0)
    records = replay(log, RUN / "validator-0.jsonl")
    assert read_endpoints(tmp_path) == {"validator-0": exporters.server.url}
    got = scrape(exporters.server.url)
    last = [r for r in records if r["event"] == "scores"][-1]
    assert got[("templar_window", ())] == last["window"]
    assert got[("templar_heldout_loss", ())] == pytest.approx(last["heldout_loss"])
    assert got[("templar_windows_total", (("status", "scored"),))] == len(records) - 1
    for peer, rec in last["uids"].items():
        assert got[("templar_peer_weight", (("peer", peer),))] == pytest.approx(rec["weight"])
        assert got[("templar_peer_score", (("peer", peer), ("score", "final")))] == pytest.approx(rec["final"])
        assert got[("templar_peer_status", (("peer", peer), ("status", rec["status"])))] == 1.0
    # uid 5 was 'ok' in window 3 and is 'banned' since: only its current status has a series
    assert not any(k[0] == "templar_peer_status" and ("peer", "5") in k[1] and ("status", "ok") in k[1] for k in got)
    # window 2 found nobody's payload; every later window gathered uid 1
    assert got[("templar_gather_outcomes_total", (("outcome", "missing"), ("peer", "1")))] == 1
    assert got[("templar_gather_outcomes_total", (("outcome", "ok"), ("peer", "1")))] == len(records) - 2
    assert got[("templar_gather_peers", (("outcome", "banned"),))] == 1
    assert got[("templar_phase_seconds", (("phase", "gather"),))] == pytest.approx(last["gather_s"])
    assert got[("process_resident_memory_bytes", ())] > 0
    assert got[("templar_neuron_info", (("behavior", ""), ("role", "validator"), ("uid", "0")))] == 1
    assert not any(k[0].startswith("templar_train_loss") for k in got)  # miner-only gauges stay off


def test_miner_endpoint_counts_tokens_payloads_and_gather_reasons(served):
    cfg, log, exporters = served("miner", 1, "metrics.peak_tflops=0.5")
    records = replay(log, RUN / "miner-1.jsonl")
    assert not any(k[0] == "templar_payload_bytes" for k in scrape(exporters.server.url))  # not logged yet
    log.emit("window", window=8, train_loss=6.5, inner_steps=2, uploaded=True, compute_s=2.0, comm_s=0.5,
             payload_bytes=12345, gathered=[1], skipped={"2": "late: stored 3.1 s after the upload span"})
    log.emit("phase", window=8, phase="train", start=100.0, end=101.5, lane="main")
    log.emit("phase", window=8, phase="gather", start=101.0, end=101.25, lane="comm")
    got = scrape(exporters.server.url)
    assert got[("templar_window_phase_seconds", (("lane", "main"), ("phase", "train")))] == 1.5
    assert got[("templar_window_phase_time_seconds_total", (("lane", "comm"), ("phase", "gather")))] == 0.25
    windows = [r for r in records if r["event"] == "window"]
    per_step = cfg.inner.batch * (cfg.data.seq_len - 1)
    assert got[("templar_tokens_total", ())] == per_step * (sum(r["inner_steps"] for r in windows) + 2)
    assert got[("templar_tokens_per_second", ())] == pytest.approx(per_step * 2 / 2.0)
    assert 0 < got[("templar_mfu_ratio", ())] < 1
    assert got[("templar_payload_bytes", ())] == 12345
    assert got[("templar_train_loss", ())] == 6.5
    assert got[("templar_phase_seconds", (("phase", "compute"),))] == 2.0
    assert got[("templar_time_spent_seconds_total", (("phase", "communication"),))] == pytest.approx(
        sum(r["comm_s"] for r in windows) + 0.5)
    assert got[("templar_windows_total", (("status", "behind"),))] == 1  # window 2: started late
    assert got[("templar_uploads_total", (("outcome", "ok"),))] == len(windows)
    assert got[("templar_gather_outcomes_total", (("outcome", "late"), ("peer", "2")))] == 1
    assert got[("templar_gather_peers", (("outcome", "late"),))] == 1
    assert got[("templar_gather_peers", (("outcome", "missing"),))] == 0  # zeroed, not left at window 2's 6
    assert got[("templar_neuron_info", (("behavior", "honest"), ("role", "miner"), ("uid", "1")))] == 1
    assert not any(k[0] == "templar_heldout_loss" for k in got)


def test_a_taken_port_is_a_typed_error_naming_the_key(served):
    from templar_jax.metrics import MetricsServer, MetricsServerError

    _, _, exporters = served("miner", 1)
    with pytest.raises(MetricsServerError, match=f"metrics.port={exporters.server.port}"):
        MetricsServer(exporters.metrics.registry, port=exporters.server.port)


def test_metrics_are_off_by_default(tmp_path):
    cfg = load_run_config("demo")
    log = EventLog(tmp_path, "miner", 1)
    exporters = attach_exporters(log, cfg, model=load_model_config(cfg.model.preset), mesh=None, run_dir=tmp_path)
    assert exporters.server is None and exporters.wandb is None and log.sinks == []
    assert read_endpoints(tmp_path) == {}


def test_a_failing_sink_never_stops_the_log(tmp_path, caplog):
    log, seen = EventLog(tmp_path, "miner", 1), []
    log.subscribe(lambda r: 1 / 0)
    log.subscribe(seen.append)
    log.emit("window", window=3, train_loss=np.float32(2.5), skipped={2: "missing"})
    assert seen == [next(read_events(log.path))]  # the sink sees what readers of the log see
    assert seen[0]["train_loss"] == 2.5 and seen[0]["skipped"] == {"2": "missing"}
    assert "ZeroDivisionError" in caplog.text


def test_reason_kind():
    assert reason_kind("missing: gradient-2-1-vdemo not found") == "missing"
    assert reason_kind("invalid") == "invalid" and reason_kind("") == "unknown"


def test_device_memory_from_memory_stats():
    devices = [SimpleNamespace(platform="gpu", id=0, memory_stats=lambda: {"bytes_in_use": 7, "bytes_limit": 80}),
               SimpleNamespace(platform="cpu", id=0, memory_stats=lambda: None)]
    metrics = NeuronMetrics(role="miner", uid=1)
    metrics.registry.register(DeviceMemoryCollector(lambda: devices))
    text = generate_latest(metrics.registry).decode()
    assert 'templar_device_memory_bytes{device="gpu:0",kind="bytes_in_use"} 7.0' in text
    assert 'templar_device_memory_bytes{device="gpu:0",kind="bytes_limit"} 80.0' in text
    assert "cpu:0" not in text


class FakeWandb:
    """The slice of the wandb module WandbSink uses."""

    def __init__(self):
        self.inits, self.rows, self.finished = [], [], False

    def init(self, **kwargs):
        self.inits.append(kwargs)
        return self

    def log(self, row):
        self.rows.append(row)

    def finish(self):
        self.finished = True


def test_wandb_sink_logs_each_events_numbers(tmp_path):
    fake = FakeWandb()
    log = EventLog(tmp_path, "validator", 0)
    sink = WandbSink("templar-test", role="validator", uid=0, config={"run": {"version": "x"}}, module=fake)
    log.subscribe(sink)
    last = [r for r in replay(log, RUN / "validator-0.jsonl") if r["event"] == "scores"][-1]
    sink.close()
    assert fake.inits == [{"project": "templar-test", "name": "validator-0", "config": {"run": {"version": "x"}}}]
    row = fake.rows[-1]
    assert row["window"] == last["window"] and row["scores/heldout_loss"] == pytest.approx(last["heldout_loss"])
    assert row["scores/uids/4/weight"] == pytest.approx(last["uids"]["4"]["weight"])
    assert "scores/params_digest" not in row and "scores/uids/5/status" not in row  # strings are left out
    assert fake.finished


@pytest.fixture
def without_wandb(monkeypatch):
    """`import wandb` fails as if the extra were not installed."""
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)


def test_wandb_missing_is_a_typed_error(without_wandb):
    from templar_jax.metrics import WandbError

    with pytest.raises(WandbError, match="templar-jax\\[wandb\\]"):
        WandbSink("p", role="miner", uid=1)


def test_a_failing_wandb_closes_the_metrics_endpoint_already_started(monkeypatch, tmp_path, without_wandb):
    import socket

    from templar_jax.metrics import WandbError, exporters
    from templar_jax.metrics.server import MetricsServer

    started = []
    monkeypatch.setattr(exporters, "MetricsServer", lambda *a, **k: started.append(MetricsServer(*a, **k)) or started[-1])
    cfg = load_run_config("demo", ["metrics.port=0", "metrics.wandb_project=p"])
    with pytest.raises(WandbError):
        exporters.attach_exporters(EventLog(tmp_path, "miner", 1), cfg, model=load_model_config(cfg.model.preset),
                                   mesh=None, run_dir=tmp_path)
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", started[0].port))


def test_docs_name_every_metric():
    """docs/metrics.md lists each family a miner or a validator exports, as scraped."""
    docs = (Path(__file__).parents[1] / "docs" / "metrics.md").read_text()
    for role in ("miner", "validator"):
        metrics = NeuronMetrics(role=role, uid=1, tokens_per_step=4, flops_per_token=1.0, peak_flops=1.0)
        metrics.registry.register(DeviceMemoryCollector(lambda: []))
        metrics({"t": 1.0, "event": "window", "window": 1, "inner_steps": 1, "compute_s": 1.0, "payload_bytes": 3})
        text = generate_latest(metrics.registry).decode()
        names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
        missing = [n for n in sorted(names) if f"`{n}`" not in docs and not n.endswith("_created")]
        assert not missing, f"docs/metrics.md does not name {missing}"
