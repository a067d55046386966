"""Overlapped outer steps (run config sparseloco.overlap, docs/overlap.md): the rebase rule, the
inner loop's landing hook, and the experiment's overlapped SparseLoCo on the same tokens."""

import threading
import time
from concurrent.futures import Future

import jax.numpy as jnp
import numpy as np
import pytest

from templar_jax.neurons.overlap import Landing
from templar_jax.neurons.window_state import Contribution, Exchanged, Pending
from templar_jax.sparseloco import rebase
from templar_jax.train.loop import run_steps


def test_rebase_moves_the_local_progress_onto_the_new_global_params():
    theta_new = {"w": jnp.array([10.0, 20.0], jnp.float32)}
    x_base = {"w": jnp.array([1.0, 2.0], jnp.float32)}
    x = {"w": jnp.array([1.5, 1.0], jnp.float32)}  # progress since x_base: +0.5, -1.0
    out = rebase(theta_new, x, x_base)
    np.testing.assert_array_equal(out["w"], [10.5, 19.0])
    assert out["w"].dtype == jnp.float32
    # nothing trained yet: exactly the new params
    np.testing.assert_array_equal(rebase(theta_new, x_base, x_base)["w"], theta_new["w"])
    # the experiment's replicas carry a leading axis; the global params broadcast over it
    stacked = {"w": jnp.stack([x["w"], x_base["w"]])}
    out = rebase(theta_new, stacked, {"w": jnp.stack([x_base["w"], x_base["w"]])})
    np.testing.assert_array_equal(out["w"], [[10.5, 19.0], [10.0, 20.0]])


def _pending(future: Future, x_base) -> Pending:
    return Pending(window=7, future=future, x_base=x_base, done=Contribution(compute_s=1.0))


def _exchanged(params, clock_wait=(0.0, 0.0)) -> Exchanged:
    return Exchanged(params=params, gathered=None, uploaded=True, params_digest="d", seconds=0.5,
                     clock_wait=clock_wait)


def _step(params, opt_state, batch):  # one "inner step": +1 everywhere
    return ({"w": params["w"] + 1.0}, opt_state, {"loss": jnp.float32(0), "grad_norm": jnp.float32(0)})


def test_landing_applies_the_outer_step_once_between_inner_steps():
    future = Future()
    x_base = {"w": jnp.zeros(3, jnp.float32)}
    landing = Landing(_pending(future, x_base))

    def on_step(record):  # the aggregate arrives during the second step
        if record.step == 1:
            future.set_result(_exchanged({"w": jnp.full(3, 100.0, jnp.float32)}))

    out = run_steps(_step, x_base, None, [np.zeros(1)] * 5, on_step=on_step, before_step=landing)
    assert landing.landed and landing.after_steps == 2
    # 2 steps from x_base, rebased onto 100, 3 more steps: every step counted once
    np.testing.assert_array_equal(out.params["w"], [105.0] * 3)
    assert landing.finish(out.params) is out.params  # landed already: nothing more
    assert landing.span[0] <= landing.span[1] and landing.seconds >= 0


def test_landing_waits_at_the_end_when_the_aggregate_is_late():
    future = Future()
    x_base = {"w": jnp.zeros(2, jnp.float32)}
    landing = Landing(_pending(future, x_base))
    out = run_steps(_step, x_base, None, [np.zeros(1)] * 3, before_step=landing)
    assert not landing.landed
    timer = threading.Timer(0.2, future.set_result, [_exchanged({"w": jnp.full(2, -1.0, jnp.float32)})])
    timer.start()
    x = landing.finish(out.params)
    np.testing.assert_array_equal(x["w"], [2.0, 2.0])  # -1 + 3 steps
    assert landing.after_steps == 3 and landing.seconds >= 0.1  # it waited for the comm thread


def test_landing_does_not_count_the_comm_threads_clock_wait():
    """Waiting while the comm thread waits for the gather time (uploads still open) is the
    clock's, as in the synchronous loop; only the rest is exposed communication."""
    future = Future()
    landing = Landing(_pending(future, {"w": jnp.zeros(1)}))
    now = time.time()
    timer = threading.Timer(0.3, future.set_result, [_exchanged({"w": jnp.ones(1)}, clock_wait=(now, now + 0.25))])
    timer.start()
    landing.finish({"w": jnp.zeros(1)})
    total = landing.span[1] - landing.span[0]
    assert total >= 0.25 and landing.seconds <= total - 0.2


def test_landing_raises_what_the_comm_thread_raised():
    future = Future()
    future.set_exception(RuntimeError("gather failed"))
    landing = Landing(_pending(future, {"w": jnp.zeros(1)}))
    with pytest.raises(RuntimeError, match="gather failed"):
        landing.finish({"w": jnp.zeros(1)})


def test_serial_chain_makes_one_call_at_a_time():
    """The overlapped miner's two threads share one chain connection: calls never overlap."""
    from templar_jax.neurons.overlap import SerialChain

    class Chain:
        blocks_per_window, inside, most = 5, 0, 0

        def current_block(self):
            self.inside += 1
            self.most = max(self.most, self.inside)
            time.sleep(0.01)
            self.inside -= 1
            return 42

    inner = Chain()
    chain = SerialChain(inner)
    threads = [threading.Thread(target=lambda: [chain.current_block() for _ in range(10)]) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inner.most == 1 and chain.current_block() == 42 and chain.blocks_per_window == 5


def _landing_miner():
    """A Miner with only what `_land` touches (its report is a no-op here)."""
    from templar_jax.neurons.miner import Miner
    miner = Miner.__new__(Miner)
    miner._report_landed = lambda landing, start: None
    return miner


def test_land_waits_for_the_resume_save_and_raises_its_error():
    """The resume save queued after an exchange on the comm thread: landing it (a window behind,
    or the last one) waits for the save, so the synchronous window's own save never runs beside
    it, and a failed save reaches the main loop instead of vanishing with its future."""
    from templar_jax.neurons.window_state import MinerState
    miner, state = _landing_miner(), MinerState({"w": jnp.zeros(1)}, None, None)
    exchange, saved = Future(), Future()
    exchange.set_result(_exchanged({"w": jnp.ones(1)}))
    pending = Pending(window=7, future=exchange, x_base={"w": jnp.zeros(1)}, done=Contribution(), saved=saved)
    threading.Timer(0.2, saved.set_result, [None]).start()
    t0 = time.time()
    landed = miner._land(state, pending, start=0)
    assert time.time() - t0 >= 0.15 and saved.done()
    np.testing.assert_array_equal(landed.params["w"], [1.0])
    failed = Future()
    failed.set_exception(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        miner._land(state, pending._replace(saved=failed), start=0)


@pytest.mark.slow
def test_overlapped_sparseloco_trains_on_the_same_tokens():
    """Round 1 has nothing in flight (identical to SparseLoCo); later rounds differ only by the
    overlap, and both learn."""
    from templar_jax.experiment.config import SimConfig
    from templar_jax.experiment.methods import run_sparseloco, run_sparseloco_overlap
    from templar_jax.experiment.simulator import Simulator

    sim = Simulator(SimConfig(replicas=2, inner_steps=3, rounds=3, batch=2, inner_lr=3e-3, warmup_steps=1,
                              data="synthetic", n_eval=8, overlap_steps=1))
    noop = lambda *a: None  # noqa: E731
    plain, overlapped = run_sparseloco(sim, noop), run_sparseloco_overlap(sim, noop)
    assert overlapped.method == "sparseloco-overlap" and overlapped.tokens == plain.tokens
    assert overlapped.heldout_loss[0] == plain.heldout_loss[0]
    assert overlapped.heldout_loss[1:] != plain.heldout_loss[1:]
    initial = sim.evaluate(sim.params0)
    assert max(plain.final_loss, overlapped.final_loss) < initial


def test_a_failing_overlapped_loop_cancels_the_comm_threads_queue():
    """An error on the main loop ends the run at once: work still queued on the comm thread
    (e.g. a resume save) never starts, and the error is the run's."""
    from concurrent.futures import ThreadPoolExecutor
    from types import SimpleNamespace

    from templar_jax.neurons.miner import COMM_THREAD, Miner

    miner = Miner.__new__(Miner)
    miner.comm = ThreadPoolExecutor(1, thread_name_prefix=COMM_THREAD)
    miner.cfg = SimpleNamespace(sparseloco=SimpleNamespace(overlap=True))
    miner.clock = SimpleNamespace(current_window=lambda: 0)
    miner.events = SimpleNamespace(emit=lambda *a, **k: None)
    miner.wait_start_window = lambda: 0
    miner.start_state, miner.upload = (lambda start, window: None), None
    release, queued = threading.Event(), []

    def step_overlapped(state, window, start, pending):
        miner.comm.submit(release.wait, 5)  # an exchange in flight
        queued.append(miner.comm.submit(lambda: None))  # queued behind it
        raise RuntimeError("training failed")

    miner.step_overlapped = step_overlapped
    with pytest.raises(RuntimeError, match="training failed"):
        miner.run(windows=3)
    release.set()
    assert queued[0].cancelled()
