"""The miner's inner loop: up to H AdamW steps per window from a copy of theta0, the optimizer
state carried across windows (SPEC sec. 2), stopped early by the window's training deadline."""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from templar_jax.model.offload import fresh_device_copy
from templar_jax.multihost.arrays import BatchFeed
from templar_jax.train.loop import run_steps
from templar_jax.train.optimizer import TrainConfig, make_inner_optimizer
from templar_jax.train.step import init_opt_state, make_train_step


class InnerTrainer:
    """`init(params) -> opt_state`; `run(theta0, opt_state, batches, deadline=None)`."""

    def __init__(self, model_cfg, train_cfg: TrainConfig, *, accum_steps: int = 1, pad_id: int | None,
                 mesh=None):
        """`train_cfg`: e.g. a run config's `inner` section (which is a TrainConfig)."""
        self.model_cfg, self.mesh = model_cfg, mesh
        self.feed = BatchFeed(mesh)  # on several processes: each loads `feed.local_rows` of a batch
        self.optimizer = make_inner_optimizer(train_cfg)
        self.step = make_train_step(model_cfg, self.optimizer, mesh=mesh, accum_steps=accum_steps,
                                    pad_id=pad_id)

    def init(self, params):
        return init_opt_state(self.optimizer, params, self.model_cfg, self.mesh)

    def run(self, theta0, opt_state, batches: Sequence[np.ndarray], *, deadline: float | None = None,
            before_step=None, clock: Callable[[], float] = time.time):
        """-> (params, opt_state, losses). theta0 is left untouched: the step donates its inputs,
        so it trains a copy. With a deadline (unix time), stops before a step that would not
        finish in time, so a slow miner still uploads inside its window instead of missing it
        (judged by `clock`, which must answer alike on every process of a neuron).
        `before_step(params) -> params` runs before each step (run_steps)."""
        params = fresh_device_copy(theta0)  # theta0 may wait in host memory (run config offload)
        out = run_steps(self.step, params, opt_state, batches, put_batch=self.feed.put, deadline=deadline,
                        before_step=before_step, clock=clock)
        return out.params, out.opt_state, out.losses
