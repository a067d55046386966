"""Attach a neuron's exporters to its event log from the run config's `metrics` section: the
Prometheus endpoint (`metrics.port`) and W&B logging (`metrics.wandb_project`). Both are off by
default; the neuron code only emits events."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable

import jax
from jax.sharding import Mesh
from prometheus_client import ProcessCollector

from templar_jax.config import RunConfig
from templar_jax.events import EventLog
from templar_jax.metrics.memory import DeviceMemoryCollector
from templar_jax.metrics.neuron import NeuronMetrics
from templar_jax.metrics.server import MetricsServer, write_endpoint
from templar_jax.metrics.wandb_log import WandbSink
from templar_jax.model.config import ModelConfig
from templar_jax.train.metrics import train_flops_per_token

log = logging.getLogger(__name__)


@dataclass
class Exporters:
    """What `attach_exporters` started (each None when its key is unset)."""

    metrics: NeuronMetrics | None = None
    server: MetricsServer | None = None
    wandb: WandbSink | None = None
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            close()


def neuron_metrics(cfg: RunConfig, *, role: str, uid: int, model: ModelConfig, n_devices: int) -> NeuronMetrics:
    """NeuronMetrics counting the run's inner batch as tokens (target positions: seq_len - 1 per
    sequence, as `train.loop` counts them) and MFU against `metrics.peak_tflops` per device."""
    positions = cfg.data.seq_len - 1
    return NeuronMetrics(role=role, uid=uid, tokens_per_step=cfg.inner.batch * positions,
                         flops_per_token=train_flops_per_token(model, positions),
                         peak_flops=cfg.metrics.peak_tflops * 1e12 * n_devices)


def attach_exporters(events: EventLog, cfg: RunConfig, *, model: ModelConfig, mesh: Mesh | None,
                     run_dir: str | os.PathLike) -> Exporters:
    """Subscribe the configured exporters to `events`; with `metrics.port` set, serve them and
    record the URL in RUN_DIR/metrics/{role}-{uid}.json (the dashboard links it). `mesh` is the
    neuron's (None: one local device)."""
    section, out = cfg.metrics, Exporters()
    if section.port is not None:
        devices = list(mesh.devices.flat) if mesh is not None else jax.local_devices()[:1]
        out.metrics = neuron_metrics(cfg, role=events.role, uid=events.uid, model=model, n_devices=len(devices))
        ProcessCollector(registry=out.metrics.registry)
        out.metrics.registry.register(DeviceMemoryCollector(lambda: devices))
        events.subscribe(out.metrics)
        out.server = MetricsServer(out.metrics.registry, port=section.port, host=section.host)
        out.closers.append(out.server.close)
        write_endpoint(run_dir, events.role, events.uid, out.server.url)
        log.info("metrics at %s", out.server.url)
    if section.wandb_project:
        try:
            out.wandb = WandbSink(section.wandb_project, role=events.role, uid=events.uid, config=cfg.to_dict())
        except BaseException:
            out.close()  # the endpoint started above would otherwise keep its port for good
            raise
        events.subscribe(out.wandb)
        out.closers.append(out.wandb.close)
    return out
