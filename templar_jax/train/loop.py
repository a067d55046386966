"""The one inner training loop: a jitted step over a stream of batches.

    out = run_steps(step, params, opt_state, batches, deadline=time.time() + 30, on_step=print)
    out.params, out.opt_state, out.losses, out.stopped_early

Every trainer in the package runs it: the `train` command (`run_training`), the miner
(`InnerTrainer`, with a window deadline) and the experiment harness (a vmapped step over
replicas). Each step's loss is read back to the host before the next starts, so the recorded
seconds are the step's real time (and a deadline can be judged by them).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """One step: loss and grad_norm are host floats (the mean over replicas for a vmapped step);
    tokens counts trained target positions of the whole (global) batch; seconds includes putting
    the batch on the devices."""

    step: int
    loss: float
    grad_norm: float
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-12)


class LoopResult(NamedTuple):
    params: Any
    opt_state: Any
    records: list[StepRecord]
    stopped_early: bool  # the deadline stopped it before the batches ran out

    @property
    def losses(self) -> list[float]:
        return [r.loss for r in self.records]


def host_mean(x) -> float:
    """A metric as a host float: a scalar as is, a per-replica vector by its mean."""
    return float(x) if np.ndim(x) == 0 else float(np.mean(np.asarray(x)))


def target_positions(batch) -> int:
    """Trained targets in a [..., L] token batch: every row's L - 1 shifted positions."""
    seq_len = batch.shape[-1]
    return int(np.prod(batch.shape[:-1])) * (seq_len - 1)


def run_steps(
    step: Callable,
    params,
    opt_state,
    batches: Iterable,
    *,
    put_batch: Callable[[Any], jax.Array] = jnp.asarray,
    deadline: float | None = None,
    clock: Callable[[], float] = time.time,
    on_step: Callable[[StepRecord], None] | None = None,
    before_step: Callable[[Any], Any] | None = None,
) -> LoopResult:
    """`params, opt_state, metrics = step(params, opt_state, put_batch(b))` for each batch b.

    `step` may donate its inputs: pass params you will not read again (a copy of theta0).
    With a deadline (in `clock`'s time), the loop stops before a step that would end after it,
    judged by the previous step's duration; the first step always runs, so a slow trainer still
    has something to send. `on_step` is called with each step's record as it completes;
    `before_step(params)` returns the params the next step trains (the miner's overlapped outer
    step moves them onto the new global params there; see neurons/overlap.py).
    """
    records: list[StepRecord] = []
    for batch in batches:
        if deadline is not None and records and clock() + records[-1].seconds > deadline:
            return LoopResult(params, opt_state, records, True)
        if before_step is not None:
            params = before_step(params)
        t0 = clock()
        device_batch = put_batch(batch)
        params, opt_state, metrics = step(params, opt_state, device_batch)
        # one read of both metrics, which waits for the step: honest timing
        loss, grad_norm = jax.device_get((metrics["loss"], metrics["grad_norm"]))
        record = StepRecord(step=len(records), loss=host_mean(loss), grad_norm=host_mean(grad_norm),
                            tokens=target_positions(device_batch), seconds=clock() - t0)
        records.append(record)
        if on_step is not None:
            on_step(record)
    return LoopResult(params, opt_state, records, False)


def steady_tokens_per_s(records: list[StepRecord]) -> float:
    """Throughput over all steps but the first (which includes compilation)."""
    rest = records[1:] or records
    return sum(r.tokens for r in rest) / max(sum(r.seconds for r in rest), 1e-9)
