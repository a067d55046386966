"""templar_jax.train: the inner loop (loss, AdamW + schedule, jitted step, throughput metrics)."""

from templar_jax.train.loss import loss_fn, token_loss_sum
from templar_jax.train.metrics import matmul_param_count, mfu, train_flops_per_token
from templar_jax.train.optimizer import TrainConfig, lr_schedule, make_inner_optimizer
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
    "token_loss_sum",
    "train_flops_per_token",
]
