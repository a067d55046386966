"""Helpers of the tests that run a whole local network as real processes (a LocalChain, file
buckets, one validator, miners): build it, wait on it, read its event logs."""

from __future__ import annotations

import time
from pathlib import Path

from templar_jax.config import RunConfig, load_run_config
from templar_jax.demo import network as netmod
from templar_jax.events import read_all_events

# A small, fast network: 12-block windows of 1 s blocks (demo config), 4 inner steps, short
# upload and gather windows. Tests append their own keys (a later key wins).
FAST_OVERRIDES = (
    "run.blocks_per_window=12",
    "inner.steps=4",
    "validator.eval_sequences=4",
    "peers.upload_window_s=2",
    "peers.gather_timeout_s=3",
)


def events(run_dir, role=None, event=None, uid=None) -> list[dict]:
    """The run's events, filtered by role, event name and uid (None: any)."""
    out = []
    for ev in read_all_events(run_dir):
        if role and ev.get("role") != role:
            continue
        if event and ev.get("event") != event:
            continue
        if uid is not None and ev.get("uid") != uid:
            continue
        out.append(ev)
    return out


def wait_for(pred, timeout_s: float, what: str):
    """pred()'s first truthy value, polled every 0.5 s; AssertionError naming `what` on timeout."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def build_network(run_dir: Path, specs: list[netmod.NeuronSpec], overrides: list[str], windows: int,
                  config: str = "demo") -> tuple[netmod.Network, RunConfig]:
    """A fresh run folder with compiled programs and a chain on which every spec is registered
    (nothing started yet)."""
    settings = load_run_config(config, overrides)
    net = netmod.Network(run_dir=run_dir, config=config, overrides=overrides, windows=windows, neurons=specs)
    netmod.prepare(net, resume=False)
    assert netmod.warm_up(net) == 0, (run_dir / "logs" / "warmup.log").read_text()[-3000:]
    netmod.create_chain(net, settings)
    return net, settings


def finish(net: netmod.Network, settings: RunConfig, *, slack_s: float = 240.0) -> None:
    """Wait for the validator to finish its windows (AssertionError with its log's tail if it did
    not exit cleanly in time), then give every miner up to 40 s to land its last window."""
    window_s = settings.run.blocks_per_window * settings.run.block_time_s
    ok = netmod.wait_done(net, timeout_s=net.windows * window_s + slack_s)
    assert ok, (net.run_dir / "logs" / "validator-0.log").read_text()[-3000:]
    for proc in net.procs.values():
        try:
            proc.wait(timeout=40)
        except Exception:
            pass


def scored_windows(run_dir) -> dict[int, dict]:
    """The validator's `scores` event of each window (the last one where it scored a window twice)."""
    return {e["window"]: e for e in events(run_dir, "validator", "scores")}
