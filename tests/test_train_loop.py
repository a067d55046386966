"""The one inner loop (train.loop.run_steps): records, progress, deadline, vmapped metrics; the
miner's InnerTrainer over it (theta0 untouched, same result as stepping by hand)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from templar_jax.model import init_params, load_model_config
from templar_jax.train import (
    InnerTrainer,
    TrainConfig,
    init_opt_state,
    make_inner_optimizer,
    make_train_step,
    markov_batches,
    run_steps,
    steady_tokens_per_s,
)


class FakeClock:
    """Time that moves only when a step runs (each step takes `step_s`)."""

    def __init__(self, step_s: float):
        self.now, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        return self.now

    def step(self, params, opt_state, batch):
        self.now += self.step_s
        loss = jnp.asarray(batch, jnp.float32).mean()
        return params + 1, opt_state, {"loss": loss, "grad_norm": 2 * loss}


def test_records_and_progress_callback():
    clock = FakeClock(step_s=0.5)
    seen = []
    batches = [np.full((2, 5), i, np.uint32) for i in range(3)]
    out = run_steps(clock.step, 0, "opt", batches, clock=clock, on_step=seen.append)
    assert out.params == 3 and out.opt_state == "opt" and not out.stopped_early
    assert out.losses == [0.0, 1.0, 2.0]
    assert [r.step for r in out.records] == [0, 1, 2] and seen == out.records
    assert [r.grad_norm for r in out.records] == [0.0, 2.0, 4.0]
    assert all(r.tokens == 2 * 4 and r.seconds == 0.5 and r.tokens_per_s == 16 for r in out.records)
    assert steady_tokens_per_s(out.records) == 16


def test_deadline_stops_before_a_step_that_would_end_after_it():
    clock = FakeClock(step_s=1.0)
    batches = [np.zeros((1, 3), np.uint32)] * 5
    out = run_steps(clock.step, 0, None, batches, clock=clock, deadline=2.5)
    # step 0 ends at 1.0; step 1 would end at 2.0 (runs); step 2 would end at 3.0 > 2.5 (skipped)
    assert out.params == 2 and out.stopped_early and clock.now == 2.0
    # the first step always runs, even past the deadline, so a slow miner has something to send
    late = run_steps(FakeClock(step_s=10.0).step, 0, None, batches, clock=FakeClock(1.0), deadline=-1)
    assert late.params == 1 and late.stopped_early


def test_vmapped_metrics_are_averaged_and_tokens_count_all_replicas():
    def step(params, opt_state, batch_RxBxL):
        loss = jnp.array([1.0, 3.0])
        return params, opt_state, {"loss": loss, "grad_norm": loss * 2}

    out = run_steps(step, None, None, [np.zeros((2, 4, 9), np.uint32)])
    assert out.records[0].loss == 2.0 and out.records[0].grad_norm == 4.0
    assert out.records[0].tokens == 2 * 4 * 8


@pytest.fixture(scope="module")
def tiny():
    cfg = load_model_config("tiny", dtype="float32", vocab_size=256, d_model=64, d_ff=128, head_dim=16)
    train_cfg = TrainConfig(lr=1e-2, warmup_steps=2, cosine_steps=10)
    batches = [b.copy() for b, _ in zip(markov_batches(cfg.vocab_size, 4, 17, seed=1), range(3))]
    return cfg, train_cfg, batches


def test_inner_trainer_trains_a_copy_and_matches_stepping_by_hand(tiny):
    cfg, train_cfg, batches = tiny
    theta0 = init_params(cfg, 0)
    before = jax.tree.map(np.asarray, theta0)
    trainer = InnerTrainer(cfg, train_cfg, accum_steps=2, pad_id=0)
    trained, opt_state, losses = trainer.run(theta0, trainer.init(theta0), batches)
    # theta0 survives the donating step, unchanged
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, theta0), before)
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert not np.array_equal(np.asarray(trained["embed"]["embedding"]), before["embed"]["embedding"])

    optimizer = make_inner_optimizer(train_cfg)
    step = make_train_step(cfg, optimizer, accum_steps=2, pad_id=0, donate=False)
    params, state = theta0, init_opt_state(optimizer, theta0, cfg)
    ref_losses = []
    for b in batches:
        params, state, m = step(params, state, jnp.asarray(b, jnp.int32))
        ref_losses.append(float(m["loss"]))
    assert losses == ref_losses
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, trained),
                 jax.tree.map(np.asarray, params))
