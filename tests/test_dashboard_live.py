"""The dashboard of a live network (no run folder): a LocalChain and the leader's file bucket with
published aggregates, read through `LiveNetwork` (aggregate headers by byte range), served and
rendered in headless Chromium like the run-folder dashboard."""

import subprocess
import time

import pytest

from templar_jax.chain.local import LocalChain
from templar_jax.dashboard import DashboardServer
from templar_jax.dashboard.live import LiveNetwork, read_aggregator_header
from templar_jax.neurons.network import PeerDirectory, open_my_bucket, publish_access
from templar_jax.protocol.aggregator_object import encode_aggregator
from templar_jax.protocol.leader import publish_start_window
from templar_jax.storage.keys import aggregator_key

from test_dashboard import CHROMIUM, DomIndex

VERSION = "live-test"
AGGREGATED = {2: {1: b"a" * 10, 2: b"b" * 20}, 3: {1: b"c" * 11, 2: b"d" * 21}, 4: {1: b"e" * 12}}


@pytest.fixture
def network(tmp_path):
    """Window 5 of a chain whose leader (uid 0) published the aggregates of windows 2-4 and weights."""
    path = tmp_path / "chain.sqlite"
    chain = LocalChain.create(path, block_time=1.0, blocks_per_window=10, genesis_time=time.time() - 55.5)
    for i, hotkey in enumerate(["validator-0", "miner-1", "miner-2", "miner-3"]):
        chain.register(hotkey, stake=1000.0 if i == 0 else 0.0)
    leader_chain = LocalChain(path, hotkey="validator-0")
    bucket, access = open_my_bucket(f"file://{tmp_path / 'buckets' / 'validator-0'}")
    publish_access(leader_chain, access)
    publish_start_window(bucket, 2, VERSION)
    for window, payloads in AGGREGATED.items():
        bucket.put(aggregator_key(window, VERSION), encode_aggregator(window, payloads))
    leader_chain.set_weights([1, 2], [0.75, 0.25])
    reader = LocalChain(path)
    return LiveNetwork(reader, PeerDirectory(reader).bucket, version=VERSION, name="local test", min_poll_s=0.0), bucket


def test_header_is_read_without_the_payloads(network):
    _, bucket = network
    header = read_aggregator_header(bucket, 3, VERSION)
    assert header.uids == [1, 2] and header.sizes == [11, 21]
    assert read_aggregator_header(bucket, 9, VERSION) is None


def test_live_state_from_chain_and_leader_bucket(network):
    live, _ = network
    state = live.get()
    assert state["window"] == 5 and state["scored_window"] == 4 and state["run"] == "local test"
    peers = {p["uid"]: p for p in state["peers"]}
    assert sorted(peers) == [1, 2, 3]
    assert peers[1]["status"] == "ok" and peers[1]["weight"] == 0.75 and peers[1]["behavior"] == "miner-1"
    assert peers[2]["status"] == "not aggregated" and peers[2]["reason"] == "not in window 4's aggregate"
    assert peers[3]["weight"] == 0.0
    assert [(w["window"], w["aggregated"], w["payload_bytes"]) for w in state["windows"]] == [
        (2, 2, 30), (3, 2, 32), (4, 1, 12)]
    neurons = {n["key"]: n for n in state["neurons"]}
    assert neurons["validator-0"]["state"] == "leader" and neurons["validator-0"]["last_window"] == 4
    assert neurons["miner-2"]["last_window"] == 3 and neurons["miner-3"]["last_window"] is None
    assert state["series"]["weight"][1] == [[5, 0.75]]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (make test installs it)")
def test_a_failed_poll_keeps_the_last_state(network):
    from templar_jax.chain.errors import ChainUnavailableError

    live, _ = network
    first = live.get()

    def down():
        raise ChainUnavailableError("node unreachable")

    live.chain.metagraph = down
    again = live.get()
    assert {k: v for k, v in again.items() if k != "now"} == {k: v for k, v in first.items() if k != "now"}


def test_chromium_renders_the_live_network(network, tmp_path):
    live, _ = network
    server = DashboardServer(live, port=0).start()
    try:
        dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
                              "--dump-dom", server.url], capture_output=True, text=True, timeout=120,
                             check=True).stdout
    finally:
        server.close()
    page = DomIndex()
    page.feed(dom)
    assert page.ids["peer-1"]["data-status"] == "ok" and page.ids["peer-2"]["data-status"] == "not aggregated"
    assert "not in window 4's aggregate" in page.text and "window-4" in page.ids
    assert [s["data-values"] for s in page.series if s["data-label"] == "uid 1"] == ["0.7500"]
