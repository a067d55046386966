"""A plain training loop over a batch iterator, with progress lines (used by the CLI and bench).

The data hook is any Iterator of uint32/int32 [B_local, L] numpy arrays: this process's rows
of the global batch (all rows in a single-process run).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Iterator

import jax
import numpy as np

from templar_jax.model import init_params
from templar_jax.model.config import ModelConfig
from templar_jax.train.metrics import mfu
from templar_jax.train.optimizer import TrainConfig, make_inner_optimizer
from templar_jax.train.step import init_opt_state, make_train_step

log = logging.getLogger(__name__)


@dataclasses.dataclass
class StepRecord:
    step: int
    loss: float
    grad_norm: float
    tokens_per_s: float
    mfu: float
    seconds: float


def run_training(
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    batches: Iterator[np.ndarray],
    steps: int,
    *,
    mesh=None,
    accum_steps: int = 1,
    pad_id: int | None = None,
    seed: int = 0,
    peak_tflops: float = 0.0,
    on_step: Callable[[StepRecord], None] | None = None,
    params: dict | None = None,
) -> tuple[dict, list[StepRecord]]:
    """Train for `steps` steps; returns final params and one record per step.

    tokens/s counts input positions of the global batch (B * (L-1)); step 0 includes compile
    time, so its throughput is reported but not representative.
    """
    from templar_jax.distributed import global_batch

    optimizer = make_inner_optimizer(train_cfg)
    params = init_params(model_cfg, seed, mesh) if params is None else params
    opt_state = init_opt_state(optimizer, params, model_cfg, mesh)
    step_fn = make_train_step(model_cfg, optimizer, mesh=mesh, accum_steps=accum_steps, pad_id=pad_id)
    n_devices = mesh.size if mesh is not None else 1
    history: list[StepRecord] = []
    for i in range(steps):
        local = next(batches)
        batch = global_batch(local, mesh) if mesh is not None else jax.numpy.asarray(local)
        t0 = time.perf_counter()
        params, opt_state, metrics = step_fn(params, opt_state, batch)
        loss = float(metrics["loss"])  # blocks until the step is done
        dt = time.perf_counter() - t0
        tokens = batch.shape[0] * (batch.shape[1] - 1)
        record = StepRecord(
            step=i,
            loss=loss,
            grad_norm=float(metrics["grad_norm"]),
            tokens_per_s=tokens / dt,
            mfu=mfu(model_cfg, batch.shape[1] - 1, tokens / dt, peak_tflops, n_devices),
            seconds=dt,
        )
        history.append(record)
        if on_step is not None:
            on_step(record)
    return params, history


def steady_tokens_per_s(history: list[StepRecord]) -> float:
    """Throughput over all steps but the first (which includes compilation)."""
    rest = history[1:] or history
    return sum(r.tokens_per_s * r.seconds for r in rest) / max(sum(r.seconds for r in rest), 1e-9)
