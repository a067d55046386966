"""Train a model from its config for a number of steps (the `train` command's core).

Builds the params (born sharded on a mesh), the AdamW state and the jitted step, then runs the
one loop (`train.loop.run_steps`) over `steps` batches of the data hook: any Iterator of
uint32/int32 [B_local, L] numpy arrays, this process's rows of the global batch (all rows in a
single-process run).
"""

from __future__ import annotations

import itertools
import time
from typing import Callable, Iterator

import jax.numpy as jnp
import numpy as np

from templar_jax.distributed import global_batch
from templar_jax.model import init_params
from templar_jax.model.config import ModelConfig
from templar_jax.train.loop import LoopResult, StepRecord, run_steps
from templar_jax.train.optimizer import TrainConfig, make_inner_optimizer
from templar_jax.train.step import init_opt_state, make_train_step


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
    on_step: Callable[[StepRecord], None] | None = None,
    params: dict | None = None,
) -> LoopResult:
    """Train for `steps` steps from `params` (default: a fresh init from `seed`).

    Step 0 includes compile time, so its throughput is reported but not representative
    (`steady_tokens_per_s` leaves it out).
    """
    optimizer = make_inner_optimizer(train_cfg)
    params = init_params(model_cfg, seed, mesh) if params is None else params
    opt_state = init_opt_state(optimizer, params, model_cfg, mesh)
    step = make_train_step(model_cfg, optimizer, mesh=mesh, accum_steps=accum_steps, pad_id=pad_id)
    put_batch = jnp.asarray if mesh is None else (lambda local: global_batch(local, mesh))
    return run_steps(step, params, opt_state, itertools.islice(batches, steps), put_batch=put_batch,
                     clock=time.perf_counter, on_step=on_step)
