"""The dashboard: its state from a recorded demo run (tests/data/dashboard_run: windows 2-7 of a
6-miner demo with a copier banned at window 4 and a noise miner), and the page rendered by a real
headless Chromium (installed by `make test`), asserting the DOM after its scripts ran."""

import json
import shutil
import subprocess
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from templar_jax.dashboard import DashboardServer, dashboard_state, render_page
from templar_jax.demo.report import collect
from templar_jax.events import read_all_events
from templar_jax.metrics import write_endpoint

RUN = Path(__file__).parent / "data" / "dashboard_run"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def test_state_of_a_recorded_run():
    state = dashboard_state(RUN)
    assert state["window"] == 7 and state["scored_window"] == 7
    peers = {p["uid"]: p for p in state["peers"]}
    assert sorted(peers) == [1, 2, 3, 4, 5, 6]
    assert peers[5]["behavior"] == "copy:1" and peers[5]["status"] == "banned"
    assert peers[5]["reason"] == "banned since window 4" and peers[5]["weight"] == 0.0
    assert peers[6]["behavior"] == "noise" and peers[1]["status"] == "ok" and peers[1]["reason"] == ""
    assert [n["key"] for n in state["neurons"]] == ["validator-0"] + [f"miner-{i}" for i in range(1, 7)]
    assert all(n["state"] == "running" for n in state["neurons"])
    windows = {w["window"]: w for w in state["windows"]}
    assert windows[2]["outcomes"] == {"missing": 6} and windows[2]["compute_s"] is None
    assert windows[4]["outcomes"] == {"ok": 5, "banned": 1} and windows[4]["aggregated"] == 6
    assert windows[5]["compute_s"] > 0 and windows[5]["comm_s"] > 0 and windows[5]["gather_s"] > 0
    heldout = collect(read_all_events(RUN))["heldout"]
    assert state["series"]["heldout_loss"] == [[w, heldout[w]] for w in sorted(heldout)]
    assert state["heldout_loss"] == heldout[7]


def test_reasons_endpoints_and_phases_of_a_starting_run(tmp_path):
    events = tmp_path / "events"
    events.mkdir()
    for p in (RUN / "events").glob("*.jsonl"):
        kept = [ln for ln in p.read_text().splitlines(keepends=True) if json.loads(ln).get("window", 0) <= 2]
        (events / p.name).write_text("".join(kept))
    write_endpoint(tmp_path, "miner", 3, "http://127.0.0.1:9/metrics")
    for uid, seconds in ((1, 2.0), (2, 3.0)):  # the miners' logged phases of window 2
        with open(events / f"miner-{uid}.jsonl", "a") as f:
            f.write(json.dumps({"t": 1.0, "role": "miner", "uid": uid, "event": "phase", "window": 2,
                                "phase": "train", "start": 10.0, "end": 10.0 + seconds, "lane": "main"}) + "\n")
    state = dashboard_state(tmp_path)
    assert state["windows"][-1]["window"] == 2 and state["windows"][-1]["phases"] == {"train": 2.5}
    peers = {p["uid"]: p for p in state["peers"]}
    assert peers[3]["status"] == "missing" and peers[3]["reason"] == "missing: gradient-2-3-vdemo not found"
    assert {n["key"]: n["metrics_url"] for n in state["neurons"]}["miner-3"] == "http://127.0.0.1:9/metrics"


def test_served_state_follows_the_logs_as_they_grow(tmp_path):
    shutil.copytree(RUN / "events", tmp_path / "events")
    server = DashboardServer(tmp_path, port=0).start()
    try:
        fetch = lambda: json.loads(urllib.request.urlopen(server.url + "state.json", timeout=10).read())  # noqa: E731
        first = fetch()
        assert first["scored_window"] == 7 and fetch()["now"] >= first["now"]
        scores = json.loads((tmp_path / "events" / "validator-0.jsonl").read_text().splitlines()[-1])
        scores.update(t=scores["t"] + 20, window=8, heldout_loss=7.25)
        with open(tmp_path / "events" / "validator-0.jsonl", "a") as f:
            f.write(json.dumps(scores) + "\n")
        later = fetch()
        assert later["scored_window"] == 8 and later["heldout_loss"] == 7.25
        assert later["series"]["heldout_loss"][-1] == [8, 7.25]
    finally:
        server.close()


def test_page_inlines_the_state_safely():
    page = render_page({"run": "</script><script>alert(1)</script>"})
    assert "</script><script>alert" not in page and "\\u003c/script>" in page
    # '<!--<script>' in a string would otherwise swallow the page's own script into the JSON
    state = {"run": "x", "peers": [{"reason": "<!--<script>"}]}
    page = render_page(state)
    assert "<!--" not in page
    inlined = page.split('<script id="initial-state" type="application/json">')[1].split("</script>")[0]
    assert json.loads(inlined) == state


class DomIndex(HTMLParser):
    """Elements by id and every SVG path with class 'series' from a dumped DOM."""

    def __init__(self):
        super().__init__()
        self.ids, self.series, self.bars, self.text, self.links = {}, [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = a
        if tag == "path" and a.get("class") == "series":
            self.series.append(a)
        if tag == "rect" and a.get("class") == "phase":
            self.bars.append(a)
        if tag == "a":
            self.links.append(a.get("href"))

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture
def dashboard():
    server = DashboardServer(RUN, port=0).start()
    yield server
    server.close()


def test_state_json_endpoint(dashboard):
    with urllib.request.urlopen(dashboard.url + "state.json", timeout=10) as resp:
        assert json.loads(resp.read())["scored_window"] == 7


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs it)")
def test_chromium_renders_each_uid_its_status_and_the_loss_series(dashboard, tmp_path):
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                          "--window-size=1400,1200", "--dump-dom", dashboard.url],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    page = DomIndex()
    page.feed(dom)
    state = dashboard_state(RUN)
    for peer in state["peers"]:  # rows the script built, one per uid, carrying the validator's status
        row = page.ids[f"peer-{peer['uid']}"]
        assert row["data-status"] == peer["status"]
    assert page.ids["peer-5"]["data-status"] == "banned" and "banned since window 4" in page.text
    loss = {s["data-label"]: s for s in page.series if s["data-label"].startswith("miner ")
            or s["data-label"] == "held-out"}
    for uid, points in state["series"]["train_loss"].items():
        drawn = loss[f"miner {uid}"]
        assert drawn["data-windows"] == ",".join(str(w) for w, _ in points)
        assert drawn["data-values"] == ",".join(f"{v:.4f}" for _, v in points)
    assert loss["held-out"]["data-values"] == ",".join(f"{v:.4f}" for _, v in state["series"]["heldout_loss"])
    weights = [s for s in page.series if s["data-label"].startswith("uid ")]
    assert len(weights) == 2 * len(state["peers"])  # weights and final scores, one line per uid
    # the recorded run predates phase events: each training window is drawn as compute + communication
    assert sorted((int(b["data-window"]), b["data-phase"]) for b in page.bars) == [
        (w, p) for w in range(3, 8) for p in ("communication", "compute")]
    assert "held-out loss 8.1689" in page.text and "window-7" in page.ids and "neuron-validator-0" in page.ids


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs it)")
def test_chromium_links_only_http_metrics_urls(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RUN, run)
    write_endpoint(run, "validator", 0, "javascript:alert(1)")
    write_endpoint(run, "miner", 1, "http://127.0.0.1:9100/metrics")
    server = DashboardServer(run, port=0).start()
    try:
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                              "--window-size=1400,1200", "--dump-dom", server.url],
                             capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        server.close()
    page = DomIndex()
    page.feed(dom)
    assert "neuron-validator-0" in page.ids and "javascript:alert(1)" in page.text  # shown as text
    assert page.links == ["http://127.0.0.1:9100/metrics"]


def test_cli_names_a_missing_run_folder(tmp_path, capsys):
    from templar_jax.cli import main

    assert main(["dashboard", str(tmp_path / "nope"), "--port", "0"]) == 1
    assert "no run folder" in capsys.readouterr().err


def test_cli_names_a_port_it_cannot_listen_on(tmp_path, capsys):
    from templar_jax.cli import main

    taken = DashboardServer(tmp_path, port=0)
    try:
        assert main(["dashboard", str(tmp_path), "--port", str(taken.port)]) == 1
        assert f"cannot listen on 127.0.0.1:{taken.port}" in capsys.readouterr().err
    finally:
        taken.close()
