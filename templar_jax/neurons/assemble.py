"""The composition root: the one place that builds a neuron's parts from a run config (chain,
my bucket and its committed read access, the peers' buckets, data, model, clock, event log)
and hands them to `Miner(...)` / `Validator(...)`. The CLI and the demo go through here; unit
tests build `NeuronParts` from in-memory pieces instead.

    miner = build_miner(load_run_config("demo"), hotkey="miner-1", run_dir="runs/x")
    miner.run(windows=10)
"""

from __future__ import annotations

from pathlib import Path

import jax

from templar_jax.chain import ValidatorRule
from templar_jax.config import RunConfig
from templar_jax.events import EventLog
from templar_jax.malloc_threshold import set_mmap_threshold
from templar_jax.metrics import attach_exporters
from templar_jax.multihost import AgreedBucket, AgreedChain, SoloAgreement, solo
from templar_jax.multihost import start as start_multihost
from templar_jax.neurons.clock import WindowClock
from templar_jax.neurons.common import NeuronParts, process_dir
from templar_jax.neurons.datasets import open_datasets
from templar_jax.neurons.mesh import neuron_mesh
from templar_jax.neurons.miner import Miner
from templar_jax.neurons.network import (
    PeerDirectory,
    my_uid,
    open_chain,
    open_my_bucket,
    publish_access,
)
from templar_jax.neurons.upload import Upload
from templar_jax.neurons.validator import Validator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.storage.credentials import decode_commitment
from templar_jax.xla_cache import enable_compilation_cache


def build_parts(cfg: RunConfig, *, role: str, hotkey: str, run_dir: str | Path,
                register_stake: float | None = None) -> NeuronParts:
    """Join the network as `hotkey` (registering on a LocalChain when `register_stake` is given),
    commit my bucket's read access, and open the run's data and model.

    On several processes (`jax.distributed` up): process 0 alone holds the chain and the buckets;
    the others receive its reads and decisions (`templar_jax.multihost`), load their own rows
    of each batch and write their event log to `run_dir/process-N/events/`."""
    enable_compilation_cache()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    agreement = neuron_agreement(cfg)
    storage = cfg.storage

    def chain_on_leader():
        return open_chain(cfg.chain.backend, cfg.chain.network, hotkey, netuid=cfg.chain.netuid,
                          wallet=cfg.chain.wallet, blocks_per_window=cfg.run.blocks_per_window,
                          block_time_s=cfg.run.block_time_s,
                          rule=ValidatorRule(min_stake=cfg.chain.validator_min_stake,
                                             require_permit=cfg.chain.validator_permit_required))

    def my_bucket_on_leader(chain):
        bucket, access = open_my_bucket(storage.bucket, endpoint=storage.endpoint,
                                        write_credentials_file=storage.write_credentials_file,
                                        read_credentials_file=storage.read_credentials_file, config=storage.client)
        publish_access(chain, access)
        return bucket

    if agreement.multiprocess:
        chain = AgreedChain.open(agreement, chain_on_leader)
        uid = my_uid(chain, register_stake=register_stake)
        bucket = AgreedBucket.open(agreement, "mine", lambda: my_bucket_on_leader(chain))
        peers = PeerDirectory(chain, storage.client,
                              opener=lambda text, config: agreed_peer_bucket(agreement, text, config))
    else:
        chain = chain_on_leader()
        uid = my_uid(chain, register_stake=register_stake)
        bucket = my_bucket_on_leader(chain)
        peers = PeerDirectory(chain, storage.client)
    data = open_datasets(cfg.data)
    model = GlobalModel(cfg, pad_id=data.pad_id, mesh=neuron_mesh(cfg.mesh.spec))
    events = EventLog(process_dir(run_dir, agreement), role, uid)
    if agreement.leader:
        attach_exporters(events, cfg, model=model.cfg, mesh=model.mesh, run_dir=run_dir)  # run config `metrics`
    return NeuronParts(cfg=cfg, hotkey=hotkey, uid=uid, run_dir=run_dir, chain=chain, bucket=bucket,
                       peers=peers, data=data, model=model,
                       clock=WindowClock(chain, upload_span_s=cfg.peers.upload_window_s, now=agreement.now),
                       events=events, agreement=agreement)


def agreed_peer_bucket(agreement: SoloAgreement, commitment: str, config) -> AgreedBucket:
    """A peer's bucket on a multi-process neuron: the commitment is parsed on every process (alike:
    same text), the bucket opened by process 0 alone when first used."""
    access = decode_commitment(commitment)
    return AgreedBucket.lazy(agreement, access.url, lambda: access.open(config=config))


def neuron_agreement(cfg: RunConfig) -> SoloAgreement:
    """One process: decisions made here. Several (jax.distributed up): made on process 0, with a
    heartbeat that ends every process when one dies or stalls (run config `multihost`)."""
    if jax.process_count() == 1:
        return solo()
    return start_multihost(heartbeat_s=cfg.multihost.heartbeat_s,
                           stall_timeout_s=cfg.multihost.stall_timeout_s).agreement


def build_miner(cfg: RunConfig, *, hotkey: str, run_dir: str | Path, upload: Upload | None = None,
                register_stake: float | None = None) -> Miner:
    """A miner; `upload` replaces the honest upload (the demo's adversaries)."""
    parts = build_parts(cfg, role=Miner.role, hotkey=hotkey, run_dir=run_dir, register_stake=register_stake)
    return Miner(parts, upload=upload)


def build_validator(cfg: RunConfig, *, hotkey: str, run_dir: str | Path, register_stake: float | None = None,
                    validator_seed: int = 0) -> Validator:
    """A validator (on one process or, with jax.distributed up, across several: see `build_parts`)."""
    set_mmap_threshold(cfg.validator.mmap_threshold_bytes)  # memory flat in the number of miners
    parts = build_parts(cfg, role=Validator.role, hotkey=hotkey, run_dir=run_dir, register_stake=register_stake)
    return Validator(parts, validator_seed=validator_seed)
