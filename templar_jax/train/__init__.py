"""templar_jax.train: the inner loop (loss, AdamW + schedule, jitted step, the one step loop,
throughput metrics)."""

from templar_jax.train.inner import InnerTrainer
from templar_jax.train.loop import LoopResult, StepRecord, run_steps, steady_tokens_per_s
from templar_jax.train.loss import loss_fn, token_loss_sum
from templar_jax.train.metrics import matmul_param_count, mfu, train_flops_per_token
from templar_jax.train.optimizer import TrainConfig, lr_schedule, make_inner_optimizer
from templar_jax.train.run import run_training
from templar_jax.train.step import (
    BatchShapeError,
    batch_sharding,
    init_opt_state,
    make_train_step,
    opt_state_shardings,
)
from templar_jax.train.synthetic import markov_batches

__all__ = [
    "BatchShapeError",
    "InnerTrainer",
    "LoopResult",
    "StepRecord",
    "TrainConfig",
    "batch_sharding",
    "init_opt_state",
    "loss_fn",
    "lr_schedule",
    "make_inner_optimizer",
    "make_train_step",
    "markov_batches",
    "matmul_param_count",
    "mfu",
    "opt_state_shardings",
    "run_steps",
    "run_training",
    "steady_tokens_per_s",
    "token_loss_sum",
    "train_flops_per_token",
]
