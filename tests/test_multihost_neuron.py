"""One miner spanning 2 real processes (jax.distributed over 127.0.0.1, 4 CPU devices each,
gloo) runs a window against a LocalChain and file buckets: process 0 alone writes, and the
payload it uploads is byte-identical to the same miner run as 1 process with 8 devices. A
killed process brings the other down within a bound, with an error naming host and phase.

Run as a script, this file is a worker: `python test_multihost_neuron.py ROOT NPROC PID PORT WINDOWS`.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

VERSION = "mh"
STALL_S = 20.0  # generous: 2 shared cores may starve a heartbeat for seconds


def overrides(root: Path) -> list[str]:
    return [f"run.version={VERSION}", "run.null_rounds=0", "run.resume_interval_windows=1",
            "model.overrides={dtype: float32}", "mesh.spec=fsdp=8", "inner.steps=2",
            "peers.upload_window_s=4", f"storage.bucket=file://{root}/buckets/miner",
            f"chain.network={root}/chain.sqlite", "multihost.heartbeat_s=0.5",
            f"multihost.stall_timeout_s={STALL_S}"]


def make_network(root: Path):
    """A manual LocalChain (the test moves blocks), a leader validator whose bucket holds the
    start window (0), and the miner's uid. Block times far apart: no deadline cuts training."""
    from templar_jax.chain.local import LocalChain
    from templar_jax.protocol.leader import publish_start_window
    from templar_jax.storage.bucket import Bucket
    from templar_jax.storage.credentials import BucketAccess, encode_commitment

    root.mkdir(parents=True)
    chain = LocalChain.create(root / "chain.sqlite", block_time=1000.0, blocks_per_window=2, mode="manual")
    validator = LocalChain(root / "chain.sqlite", hotkey="validator")
    validator.register("validator", stake=100.0)
    url = f"file://{root}/buckets/validator"
    (root / "buckets" / "validator").mkdir(parents=True)
    validator.commit(encode_commitment(BucketAccess(url)))
    publish_start_window(Bucket.open(url), 0, VERSION)
    validator.register("miner", stake=0.0)
    return chain


def _worker(root: Path, nproc: int, pid: int, port: int, windows: int) -> None:
    import logging

    import jax

    logging.basicConfig(level=logging.INFO, format=f"p{pid} %(asctime)s %(name)s: %(message)s")
    logging.getLogger("templar_jax.multihost").setLevel(logging.DEBUG)
    jax.config.update("jax_num_cpu_devices", 8 // nproc)
    from templar_jax.distributed import initialize

    # one process too: jax.distributed with gloo collectives, which sum in another order than
    # XLA's in-process CPU collectives (the payload would differ in the last bits)
    initialize(f"127.0.0.1:{port}", nproc, pid)
    from templar_jax.config import load_run_config
    from templar_jax.neurons.assemble import build_miner
    from templar_jax.neurons.upload import Upload

    class MarkedUpload(Upload):
        """The honest upload; process 0 leaves a marker once the payload is ready."""

        def prepare(self, miner, payload, meta):
            data = super().prepare(miner, payload, meta)
            if jax.process_index() == 0:
                (root / "prepared").write_text("1")
            return data

    cfg = load_run_config("demo", overrides(root))
    build_miner(cfg, hotkey="miner", run_dir=root / "run", upload=MarkedUpload()).run(windows=windows)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(root: Path, nproc: int, windows: int = 1) -> list[subprocess.Popen]:
    """The miner as `nproc` processes, until the end of window `windows - 1` (the run starts at 0)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith("JAX_")}
    env["JAX_PLATFORMS"] = "cpu"
    return [subprocess.Popen([sys.executable, str(Path(__file__).resolve()), str(root), str(nproc), str(i), str(port), str(windows)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(nproc)]


def wait_for(path: Path, procs, timeout: float) -> None:
    t0 = time.time()
    while not path.exists():
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"a worker ended early ({p.returncode}):\n{p.communicate()[0][-6000:]}")
        assert time.time() - t0 < timeout, f"{path} did not appear in {timeout} s"
        time.sleep(0.2)


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def window_event(path: Path, window: int) -> dict:
    return [e for e in events(path) if e["event"] == "window" and e["window"] == window][0]


@pytest.fixture(scope="module")
def bundled_data():
    from templar_jax.config import load_run_config
    from templar_jax.neurons.datasets import open_datasets

    open_datasets(load_run_config("demo").data)  # build any cache before several processes read it


def run_window(runs: dict, window: int) -> None:
    """Start every run's miner for one more window, open its upload when it is ready, wait."""
    for nproc, (root, chain, _) in runs.items():
        (root / "prepared").unlink(missing_ok=True)
        runs[nproc] = (root, chain, start(root, nproc, windows=window + 1))
    for nproc, (root, chain, procs) in runs.items():
        wait_for(root / "prepared", procs, 300)
        chain.advance(2)  # window + 1 begins: the upload opens
    for nproc, (root, chain, procs) in runs.items():
        for p in procs:
            out, _ = p.communicate(timeout=300)
            assert p.returncode == 0, out[-6000:]


def check_window(runs: dict, window: int) -> None:
    two, one = runs[2][0], runs[1][0]
    names = [f"debug-{window}-1-v{VERSION}", f"gradient-{window}-1-v{VERSION}"]
    for name in names:  # process 0 wrote each object once; the bytes are the 8-device run's
        assert (two / "buckets" / "miner" / name).read_bytes() == (one / "buckets" / "miner" / name).read_bytes()
    leader = window_event(two / "run" / "events" / "miner-1.jsonl", window)
    other = window_event(two / "run" / "process-1" / "events" / "miner-1.jsonl", window)
    single = window_event(one / "run" / "events" / "miner-1.jsonl", window)
    assert leader["gathered"] == other["gathered"] == single["gathered"] == [1]
    assert leader["params_digest"] == other["params_digest"] == single["params_digest"] is not None


@pytest.mark.slow
def test_two_process_miner_uploads_what_one_process_does_and_resumes(tmp_path, bundled_data):
    runs = {nproc: (tmp_path / f"p{nproc}", make_network(tmp_path / f"p{nproc}"), []) for nproc in (2, 1)}
    run_window(runs, 0)
    check_window(runs, 0)
    for nproc in runs:
        uploads = sorted(p.name for p in (runs[nproc][0] / "buckets" / "miner").rglob("*") if p.is_file())
        assert uploads == [f"debug-0-1-v{VERSION}", f"gradient-0-1-v{VERSION}"]
    # restart: both processes restore their shards of the resume checkpoint (orbax, multi-process)
    run_window(runs, 1)
    check_window(runs, 1)
    for nproc in runs:
        started = [e for e in events(runs[nproc][0] / "run" / "events" / "miner-1.jsonl") if e["event"] == "caught_up"]
        assert started and started[-1]["resumed_from"] == 0, started


def publish_leader_checkpoint(root: Path) -> None:
    """The leader's checkpoint of window 0 (the initial params, as a validator would publish)
    and the chain moved on to window 1: a miner starting now joins late."""
    from templar_jax.checkpoint import LocalCheckpoints, save_and_publish
    from templar_jax.config import load_run_config
    from templar_jax.protocol.global_model import GlobalModel
    from templar_jax.storage.bucket import Bucket

    model = GlobalModel(load_run_config("demo", overrides(root)), pad_id=0)
    with LocalCheckpoints(root / "validator-ckpt") as ckpts:
        save_and_publish(ckpts, Bucket.open(f"file://{root}/buckets/validator"), version=VERSION, window=0,
                         params=model.init_params(), global_step=1)


@pytest.mark.slow
def test_two_process_miner_joins_late_from_the_leaders_checkpoint(tmp_path, bundled_data):
    runs = {}
    for nproc in (2, 1):
        root = tmp_path / f"p{nproc}"
        runs[nproc] = (root, make_network(root), [])
        publish_leader_checkpoint(root)
        runs[nproc][1].advance(2)
    run_window(runs, 1)  # process 0 downloads the checkpoint; both restore their shards of it
    check_window(runs, 1)
    for nproc in runs:
        joined = [e for e in events(runs[nproc][0] / "run" / "events" / "miner-1.jsonl") if e["event"] == "caught_up"]
        assert joined[-1]["checkpoint_window"] == 0, joined


@pytest.mark.slow
def test_killed_process_ends_the_other_with_host_and_phase(tmp_path, bundled_data):
    root = tmp_path / "kill"
    make_network(root)
    procs = start(root, 2)
    wait_for(root / "run" / "process-1" / "events", procs, 300)  # both joined; the heartbeat runs
    procs[1].send_signal(signal.SIGKILL)  # process 0 is somewhere in start-up: compiling, in a collective
    t0 = time.time()
    out, _ = procs[0].communicate(timeout=STALL_S + 60)
    took = time.time() - t0
    assert procs[0].returncode != 0
    assert f"process 1 on {socket.gethostname()} (phase " in out, out[-4000:]
    assert "multihost neuron failed: process 0/2 on" in out and "phase '" in out, out[-4000:]
    assert took < STALL_S + 30, took


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _worker(Path(sys.argv[1]), *map(int, sys.argv[2:6]))
