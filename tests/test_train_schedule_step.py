"""The inner learning rate follows the run's global inner step: `at_schedule_step` sets only the
schedule's count, is a no-op for a miner that trained every step, and gives a late joiner the
same learning rate as everyone."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from templar_jax.model import init_params, load_model_config
from templar_jax.train.inner import InnerTrainer
from templar_jax.train.optimizer import (
    TrainConfig,
    at_schedule_step,
    global_inner_step,
    lr_schedule,
    make_inner_optimizer,
)
from templar_jax.train.synthetic import markov_batches

CFG = TrainConfig(lr=1e-2, warmup_steps=10, cosine_steps=100)


def _counts(opt_state):
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, (optax.ScaleByScheduleState,
                                                                          optax.ScaleByAdamState)))
    return {type(n).__name__: int(n.count) for n in leaves if hasattr(n, "count")}


def test_global_inner_step():
    assert global_inner_step(window=12, start_window=10, inner_steps=15) == 30
    assert global_inner_step(window=10, start_window=10, inner_steps=15) == 0
    assert global_inner_step(window=3, start_window=10, inner_steps=15) == 0


def test_only_the_schedule_count_moves_and_an_honest_miner_is_unchanged():
    tx = make_inner_optimizer(CFG)
    params = {"w": jnp.arange(4, dtype=jnp.float32)}
    state = tx.init(params)
    for _ in range(3):
        _, state = tx.update({"w": jnp.ones(4)}, state, params)
    assert _counts(state) == {"ScaleByAdamState": 3, "ScaleByScheduleState": 3}
    same = at_schedule_step(state, 3)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)) and a.dtype == b.dtype, state, same))
    moved = at_schedule_step(state, 45)
    assert _counts(moved) == {"ScaleByAdamState": 3, "ScaleByScheduleState": 45}  # Adam's bias correction stays local


def test_a_late_joiner_trains_at_the_global_learning_rate():
    tx = make_inner_optimizer(CFG.replace(grad_clip=0.0))
    params = {"w": jnp.full((3,), 0.5, jnp.float32)}
    grads = {"w": jnp.array([0.3, -0.2, 0.1], jnp.float32)}
    fresh = tx.init(params)
    first, _ = tx.update(grads, fresh, params)
    late, _ = tx.update(grads, at_schedule_step(fresh, 40), params)
    schedule = lr_schedule(CFG)
    ratio = float(schedule(40)) / float(schedule(0))
    np.testing.assert_allclose(np.asarray(late["w"]), ratio * np.asarray(first["w"]), rtol=1e-5)
    assert ratio == pytest.approx(float(schedule(40)) / (CFG.lr / CFG.warmup_steps))


def test_honest_windows_are_bit_identical_and_a_late_joiner_follows_the_run():
    """Three windows of H=2 inner steps through InnerTrainer: setting the schedule to the global
    step before each window changes nothing for a miner that trained every step, and a miner that
    joins at window 2 with a fresh optimizer trains at the run's learning rate, not warm-up's."""
    cfg = load_model_config("tiny", dtype="float32", vocab_size=256, d_model=64, d_ff=128, head_dim=16)
    train_cfg = TrainConfig(lr=1e-2, warmup_steps=3, cosine_steps=10)
    batches = [b.copy() for b, _ in zip(markov_batches(cfg.vocab_size, 4, 17, seed=1), range(6))]
    trainer = InnerTrainer(cfg, train_cfg, pad_id=0)
    theta0 = init_params(cfg, 0)
    windows = [batches[0:2], batches[2:4], batches[4:6]]

    def run(opt, global_schedule, first_window=0):
        params = theta0
        for w in range(first_window, 3):
            if global_schedule:
                opt = at_schedule_step(opt, global_inner_step(w, 0, 2))
            params, opt, _ = trainer.run(params, opt, windows[w])
        return params, opt

    today, today_opt = run(trainer.init(theta0), False)
    now, now_opt = run(trainer.init(theta0), True)
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, today), jax.tree.map(np.asarray, now))
    assert _counts(now_opt) == _counts(today_opt) == {"ScaleByAdamState": 6, "ScaleByScheduleState": 6}

    late_local, _ = run(trainer.init(theta0), False, first_window=2)  # used to restart warm-up
    late_global, late_opt = run(trainer.init(theta0), True, first_window=2)
    assert _counts(late_opt) == {"ScaleByAdamState": 2, "ScaleByScheduleState": 6}
    assert not np.array_equal(np.asarray(late_local["embed"]["embedding"]), np.asarray(late_global["embed"]["embedding"]))
