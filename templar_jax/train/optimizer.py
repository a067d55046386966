"""Inner optimizer: AdamW with linear warmup + cosine decay to a floor, global-norm clipping.

Defaults are the reference's production values (SPEC sec. 2). Weight decay is decoupled and
scaled by the learning rate (torch.optim.AdamW semantics, which optax.adamw shares) and, as in
the reference, applies to every parameter.

The schedule's step is the run's GLOBAL inner step, not this optimizer's own count: before each
window a miner sets it with `at_schedule_step(opt_state, global_inner_step(window, start, H))`, so
a late joiner, a restarted miner or one that cut a window short trains at the same learning rate
as everyone (the reference derives it from the global outer step). For a miner that trained every
step since the start window the two counts are equal, so nothing changes for it. Adam's own
count (bias correction of its moments) stays local: those moments are this miner's.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """AdamW + schedule; also the optimizer keys of a run config's `inner` section.

    lr: peak AdamW learning rate
    betas: AdamW (beta1, beta2)
    eps: AdamW epsilon
    weight_decay: AdamW decoupled weight decay (scaled by the learning rate)
    warmup_steps: linear warmup length in inner steps
    cosine_steps: cosine decay length in inner steps, after the warmup
    final_lr_fraction: lr at the end of the cosine, as a fraction of peak
    grad_clip: global gradient-norm clip; <= 0 disables
    """

    lr: float = 1.2e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    warmup_steps: int = 1500
    cosine_steps: int = 140_000
    final_lr_fraction: float = 0.1
    grad_clip: float = 1.0

    def replace(self, **overrides) -> "TrainConfig":
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def lr_schedule(cfg: TrainConfig) -> optax.Schedule:
    """lr(t) = lr*(t+1)/warmup for t < warmup, then cosine from lr to floor over cosine_steps.

    The warmup starts at lr/warmup rather than 0 so that step 0 already moves the weights.
    """
    peak, floor = cfg.lr, cfg.lr * cfg.final_lr_fraction
    warmup = max(int(cfg.warmup_steps), 0)
    decay = max(int(cfg.cosine_steps), 1)

    def schedule(count):
        t = jnp.asarray(count, jnp.float32)
        warm = peak * jnp.minimum(1.0, (t + 1.0) / max(warmup, 1))
        progress = jnp.clip((t - warmup) / decay, 0.0, 1.0)
        cosine = floor + 0.5 * (peak - floor) * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(t < warmup, warm, cosine)

    return schedule


def global_inner_step(window: int, start_window: int, inner_steps: int) -> int:
    """Inner steps the run has taken before `window`: (window - start) * H."""
    return max(0, int(window) - int(start_window)) * int(inner_steps)


def at_schedule_step(opt_state, step: int):
    """`opt_state` with the learning-rate schedule's count set to `step` (same dtype and sharding);
    every other part, Adam's count included, is unchanged."""
    def set_count(node):
        if not isinstance(node, optax.ScaleByScheduleState):
            return node
        count = node.count
        value = jnp.asarray(step, dtype=count.dtype)
        sharding = getattr(count, "sharding", None)
        return node._replace(count=value if sharding is None else jax.device_put(value, sharding))

    return jax.tree.map(set_count, opt_state, is_leaf=lambda n: isinstance(n, optax.ScaleByScheduleState))


def make_inner_optimizer(cfg: TrainConfig | None = None) -> optax.GradientTransformation:
    """clip_by_global_norm(grad_clip) -> AdamW(lr_schedule)."""
    cfg = cfg or TrainConfig()
    adamw = optax.adamw(
        lr_schedule(cfg), b1=cfg.betas[0], b2=cfg.betas[1], eps=cfg.eps, weight_decay=cfg.weight_decay
    )
    if cfg.grad_clip and cfg.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), adamw)
    return adamw
