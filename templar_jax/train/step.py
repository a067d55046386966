"""One jitted inner step: gradient accumulation over micro-batches, then an optimizer update.

    optimizer = make_inner_optimizer(TrainConfig())
    opt_state = init_opt_state(optimizer, params, model_cfg, mesh)
    step = make_train_step(model_cfg, optimizer, mesh=mesh, accum_steps=4, pad_id=eos)
    params, opt_state, metrics = step(params, opt_state, batch_BxL)

The gradient is that of the mean loss over all unmasked targets of the whole batch: micro-batch
gradients of the *summed* loss are accumulated in fp32 and divided by the total target count
once, so any accum_steps gives the same update as one big batch. With a mesh, params and
optimizer state keep their shardings (out_shardings) and are donated.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from templar_jax.model.api import abstract_params
from templar_jax.model.config import ModelConfig
from templar_jax.model.sharding import constrain, param_shardings
from templar_jax.train.loss import loss_fn

TrainStep = Callable[[dict, optax.OptState, jax.Array], tuple[dict, optax.OptState, dict]]


class BatchShapeError(ValueError):
    """A batch does not split into the configured micro-batches / mesh."""


def opt_state_shardings(optimizer: optax.GradientTransformation, model_cfg: ModelConfig, mesh: Mesh):
    """Shardings of the optimizer state: param-shaped parts follow the params, the rest replicate."""
    abstract_state = jax.eval_shape(optimizer.init, abstract_params(model_cfg))
    replicated = NamedSharding(mesh, P())
    return optax.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        abstract_state,
        param_shardings(model_cfg, mesh),
        transform_non_params=lambda _: replicated,
    )


def init_opt_state(optimizer, params: dict, model_cfg: ModelConfig, mesh: Mesh | None = None):
    """optimizer.init, born sharded like the params when a mesh is given."""
    if mesh is None:
        return jax.jit(optimizer.init)(params)
    return jax.jit(optimizer.init, out_shardings=opt_state_shardings(optimizer, model_cfg, mesh))(params)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Token batches [B, L] split over (data, fsdp) along B."""
    return NamedSharding(mesh, P(("data", "fsdp"), None))


def make_train_step(
    model_cfg: ModelConfig,
    optimizer: optax.GradientTransformation,
    mesh: Mesh | None = None,
    accum_steps: int = 1,
    pad_id: int | None = None,
    donate: bool = True,
) -> TrainStep:
    """Build the jitted step(params, opt_state, batch_BxL) -> (params, opt_state, metrics).

    metrics: loss (mean over unmasked targets), grad_norm (before clipping), n_targets.
    """
    if accum_steps < 1:
        raise BatchShapeError(f"accum_steps must be >= 1, got {accum_steps}")

    def summed_loss(params, micro_BxL):
        _, (loss_sum, n) = loss_fn(params, micro_BxL, model_cfg, pad_id, mesh)
        return loss_sum, n

    def grads_of(params, micro_BxL):
        """Gradient of the *summed* loss, so micro-batches add up exactly."""
        micro_BxL = constrain(micro_BxL, mesh, "batch", "length")
        (loss_sum, n), grads = jax.value_and_grad(summed_loss, has_aux=True)(params, micro_BxL)
        return jax.tree.map(lambda g: g.astype(jnp.float32), grads), loss_sum, n

    def step(params, opt_state, batch_BxL):
        b, l = batch_BxL.shape
        if b % accum_steps:
            raise BatchShapeError(f"batch {b} is not divisible by accum_steps {accum_steps}")
        if accum_steps == 1:
            grad_sum, loss_sum, n = grads_of(params, batch_BxL)
        else:
            # row r goes to micro-batch r % A: keeps each device's rows on that device
            micro_AxBxL = batch_BxL.reshape(b // accum_steps, accum_steps, l).swapaxes(0, 1)

            def body(carry, micro_BxL):
                g_acc, loss_acc, n_acc = carry
                g, loss_sum, n = grads_of(params, micro_BxL)
                return (jax.tree.map(jnp.add, g_acc, g), loss_acc + loss_sum, n_acc + n), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            init = (zeros, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32))
            (grad_sum, loss_sum, n), _ = jax.lax.scan(body, init, micro_AxBxL)
        denom = jnp.maximum(n, 1.0)
        grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grad_sum, params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss_sum / denom, "grad_norm": optax.tree.norm(grads), "n_targets": n}
        return params, opt_state, metrics

    donate_argnums = (0, 1) if donate else ()
    if mesh is None:
        return jax.jit(step, donate_argnums=donate_argnums)
    replicated = NamedSharding(mesh, P())
    out_shardings = (
        param_shardings(model_cfg, mesh),
        opt_state_shardings(optimizer, model_cfg, mesh),
        {"loss": replicated, "grad_norm": replicated, "n_targets": replicated},
    )
    return jax.jit(step, donate_argnums=donate_argnums, out_shardings=out_shardings)
