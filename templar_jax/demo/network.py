"""Builds and runs the local network of the demo: a LocalChain and file buckets in a run folder,
one validator and several miners as separate processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from templar_jax.chain.local import LocalChain
from templar_jax.config import RunConfig
from templar_jax.demo.behaviors import parse_behavior

VALIDATOR_STAKE = 1000.0


@dataclass
class NeuronSpec:
    role: str  # miner | validator
    hotkey: str
    behavior: str = "honest"


@dataclass
class Network:
    run_dir: Path
    config: str
    overrides: list[str]
    windows: int
    neurons: list[NeuronSpec]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def chain_path(self) -> Path:
        return self.run_dir / "chain.sqlite"

    def bucket_url(self, hotkey: str) -> str:
        return f"file://{(self.run_dir / 'buckets' / hotkey).resolve()}"

    def neuron_overrides(self, spec: NeuronSpec) -> list[str]:
        return [*self.overrides, f"storage.bucket={self.bucket_url(spec.hotkey)}",
                f"chain.network={self.chain_path.resolve()}"]


def plan_neurons(honest: int, copiers: int, noise: int, corrupt: int = 0,
                 adversaries: Sequence[str] = ()) -> list[NeuronSpec]:
    """uid 0 is the validator, then honest miners (uids 1..honest), then the adversaries:
    copiers (of the first honest miner, uid 1), noise, corrupt, then one miner per entry of
    `adversaries` (a --behavior value each, checked here)."""
    if honest < 1:
        raise ValueError("the demo needs at least one honest miner")
    for behavior in adversaries:
        parse_behavior(behavior)  # BehaviorError names a bad one before anything starts
    specs = [NeuronSpec("validator", "validator-0")]
    specs += [NeuronSpec("miner", f"miner-{i + 1}") for i in range(honest)]
    kinds = ["copy:1"] * copiers + ["noise"] * noise + ["corrupt"] * corrupt + list(adversaries)
    specs += [NeuronSpec("miner", f"miner-{honest + 1 + i}", kind) for i, kind in enumerate(kinds)]
    return specs


def prepare(net: Network, *, resume: bool) -> None:
    """Fresh: wipe the run folder. Resume: keep chain, buckets, events and validator state."""
    if net.run_dir.exists() and not resume:
        shutil.rmtree(net.run_dir)
    net.run_dir.mkdir(parents=True, exist_ok=True)
    (net.run_dir / "logs").mkdir(exist_ok=True)


def create_chain(net: Network, settings: RunConfig) -> None:
    """Create the chain (unless resuming one) and register every hotkey (validator staked)."""
    if not net.chain_path.exists():
        chain = LocalChain.create(net.chain_path, block_time=settings.run.block_time_s,
                                  blocks_per_window=settings.run.blocks_per_window)
        for spec in net.neurons:
            chain.register(spec.hotkey, stake=VALIDATOR_STAKE if spec.role == "validator" else 0.0)
        chain.close()


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    # One device per neuron: drop fake-device flags a test runner may have set for itself.
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    else:
        env.pop("XLA_FLAGS", None)
    env.setdefault("JAX_PLATFORMS", "cpu")
    # Many JAX processes share few cores: one compute thread each avoids oversubscription.
    env.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def warm_up(net: Network) -> int:
    """Compile the run's programs once into the persistent XLA cache (same env as the neurons)."""
    cmd = [sys.executable, "-m", "templar_jax.neurons.warmup", "--config", net.config,
           "--max-peers", str(len(net.neurons))]
    for o in net.overrides:
        cmd += ["--set", o]
    with open(net.run_dir / "logs" / "warmup.log", "ab") as log:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env()).returncode


def cli_args(net: Network, spec: NeuronSpec) -> list[str]:
    """The `templar-jax` arguments that run `spec` in this network."""
    args = [spec.role, "--config", net.config, "--hotkey", spec.hotkey, "--run-dir", str(net.run_dir),
            "--windows", str(net.windows)]
    for o in net.neuron_overrides(spec):
        args += ["--set", o]
    if spec.role == "miner":
        args += ["--behavior", spec.behavior]
    return args


def start(net: Network, spec: NeuronSpec) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "templar_jax.cli", *cli_args(net, spec)]
    log = open(net.run_dir / "logs" / f"{spec.hotkey}.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(),
                            start_new_session=True)
    net.procs[spec.hotkey] = proc
    return proc


def start_all(net: Network) -> None:
    for spec in net.neurons:  # validator first: it publishes the start window
        start(net, spec)


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def stop_all(net: Network) -> None:
    for proc in net.procs.values():
        stop(proc)


def wait_done(net: Network, *, timeout_s: float, on_tick=None, tick_s: float = 1.0) -> bool:
    """Wait for the validator to exit (it stops after `windows`); True when it exited cleanly."""
    validator = net.procs[net.neurons[0].hotkey]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if on_tick:
            on_tick()
        if validator.poll() is not None:
            return validator.returncode == 0
        time.sleep(tick_s)
    return False
