"""The composition root: the one place that builds a neuron's parts from a run config (chain,
my bucket and its committed read access, the peers' buckets, data, model, clock, event log)
and hands them to `Miner(...)` / `Validator(...)`. The CLI and the demo go through here; unit
tests build `NeuronParts` from in-memory pieces instead.

    miner = build_miner(load_run_config("demo"), hotkey="miner-1", run_dir="runs/x")
    miner.run(windows=10)
"""

from __future__ import annotations

from pathlib import Path

from templar_jax.chain import ValidatorRule
from templar_jax.config import RunConfig
from templar_jax.events import EventLog
from templar_jax.metrics import attach_exporters
from templar_jax.neurons.clock import WindowClock
from templar_jax.neurons.common import NeuronParts
from templar_jax.neurons.datasets import open_datasets
from templar_jax.neurons.mesh import neuron_mesh
from templar_jax.neurons.miner import Miner
from templar_jax.neurons.network import PeerDirectory, my_uid, open_chain, open_my_bucket, publish_access
from templar_jax.neurons.upload import Upload
from templar_jax.neurons.validator import Validator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.xla_cache import enable_compilation_cache


def build_parts(cfg: RunConfig, *, role: str, hotkey: str, run_dir: str | Path,
                register_stake: float | None = None) -> NeuronParts:
    """Join the network as `hotkey` (registering on a LocalChain when `register_stake` is given),
    commit my bucket's read access, and open the run's data and model."""
    enable_compilation_cache()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    chain = open_chain(cfg.chain.backend, cfg.chain.network, hotkey, netuid=cfg.chain.netuid,
                       wallet=cfg.chain.wallet, blocks_per_window=cfg.run.blocks_per_window,
                       block_time_s=cfg.run.block_time_s,
                       rule=ValidatorRule(min_stake=cfg.chain.validator_min_stake,
                                          require_permit=cfg.chain.validator_permit_required))
    uid = my_uid(chain, register_stake=register_stake)
    storage = cfg.storage
    bucket, access = open_my_bucket(storage.bucket, endpoint=storage.endpoint,
                                    write_credentials_file=storage.write_credentials_file,
                                    read_credentials_file=storage.read_credentials_file, config=storage.client)
    publish_access(chain, access)
    data = open_datasets(cfg.data)
    model = GlobalModel(cfg, pad_id=data.pad_id, mesh=neuron_mesh(cfg.mesh.spec))
    events = EventLog(run_dir, role, uid)
    attach_exporters(events, cfg, model=model.cfg, mesh=model.mesh, run_dir=run_dir)  # run config `metrics`
    return NeuronParts(cfg=cfg, hotkey=hotkey, uid=uid, run_dir=run_dir, chain=chain, bucket=bucket,
                       peers=PeerDirectory(chain, storage.client), data=data, model=model,
                       clock=WindowClock(chain, upload_span_s=cfg.peers.upload_window_s),
                       events=events)


def build_miner(cfg: RunConfig, *, hotkey: str, run_dir: str | Path, upload: Upload | None = None,
                register_stake: float | None = None) -> Miner:
    """A miner; `upload` replaces the honest upload (the demo's adversaries)."""
    parts = build_parts(cfg, role=Miner.role, hotkey=hotkey, run_dir=run_dir, register_stake=register_stake)
    return Miner(parts, upload=upload)


def build_validator(cfg: RunConfig, *, hotkey: str, run_dir: str | Path, register_stake: float | None = None,
                    validator_seed: int = 0) -> Validator:
    parts = build_parts(cfg, role=Validator.role, hotkey=hotkey, run_dir=run_dir, register_stake=register_stake)
    return Validator(parts, validator_seed=validator_seed)
