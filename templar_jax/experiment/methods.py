"""The three methods, each trained for the same token budget from the same init:

* adamw:      DDP. Every inner step the replicas' gradients are averaged (one step on the
              union of their batches): sends a dense gradient per step.
* diloco:     each replica takes H inner steps, full-precision pseudo-gradients theta0 - theta_r
              are averaged, outer Nesterov SGD (lr 0.7, momentum 0.9).
* sparseloco: same inner loop; each replica compresses its pseudo-gradient with error feedback
              (top-64/4096 = 1.56% density, 2-bit), the payloads go through the real wire
              encoder/decoder, aggregation per SPEC 2.4, outer SGD alpha 1.0.
* sparseloco-overlap: SparseLoCo with overlapped outer steps (docs/overlap.md): round r+1's first
              `overlap_steps` inner steps run from each replica's end-of-round-r params while the
              aggregate is in flight; then theta_{r+1} lands, the replicas keep that progress
              (x <- theta_{r+1} + (x - x_end_r)) and measure round r+1's pseudo-gradient from
              theta_{r+1}. The global params follow the same rule as sparseloco.

Inner optimizer state persists across rounds. `on_round(method, round, heldout_loss)` reports.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from templar_jax import wire
from templar_jax.experiment.simulator import Simulator
from templar_jax.sparseloco import aggregate, outer_step, rebase, sparseloco
from templar_jax.train.loop import run_steps

OnRound = Callable[[str, int, float], None]


@dataclasses.dataclass
class MethodResult:
    method: str
    rounds: list[int]
    tokens: list[int]
    heldout_loss: list[float]
    bytes_per_replica_per_round: int
    seconds: float

    @property
    def final_loss(self) -> float:
        return self.heldout_loss[-1]


def method_result(method: str, sim: Simulator, losses, bytes_per_round) -> MethodResult:
    rounds = list(range(1, len(losses) + 1))
    return MethodResult(method, rounds, [r * sim.tokens_per_round for r in rounds],
                        [float(x) for x in losses], int(bytes_per_round), 0.0)


def run_adamw(sim: Simulator, on_round: OnRound) -> MethodResult:
    cfg = sim.cfg
    params, opt = sim.params0, jax.jit(sim.optimizer.init)(sim.params0)
    losses = []
    for r in range(cfg.rounds):
        batches = (sim.data.stacked(s).reshape(-1, sim.seq_len) for s in sim.round_steps(r))
        params, opt, _, _ = run_steps(sim.step, params, opt, batches)
        losses.append(sim.evaluate(params))
        on_round("adamw", r, losses[-1])
    return method_result("adamw", sim, losses, bytes_per_round=4 * sim.numel * cfg.inner_steps)


def run_diloco(sim: Simulator, on_round: OnRound) -> MethodResult:
    cfg = sim.cfg
    outer = optax.sgd(cfg.diloco_lr, momentum=cfg.diloco_momentum, nesterov=True)
    params = sim.params0
    outer_state = outer.init(params)
    opt_states = jax.jit(jax.vmap(sim.optimizer.init))(sim.replicate(params))

    @jax.jit
    def outer_update(params, stacked, outer_state):
        delta = jax.tree.map(lambda p, s: p - jnp.mean(s, axis=0), params, stacked)
        updates, outer_state = outer.update(delta, outer_state, params)
        return optax.apply_updates(params, updates), outer_state

    losses = []
    for r in range(cfg.rounds):
        stacked, opt_states = sim.inner_round(params, opt_states, r)
        params, outer_state = outer_update(params, stacked, outer_state)
        losses.append(sim.evaluate(params))
        on_round("diloco", r, losses[-1])
    return method_result("diloco", sim, losses, bytes_per_round=4 * sim.numel)


def overlapped_round(sim: Simulator, theta, x_end, opt_states, round_index: int, overlap_steps: int):
    """One round whose first `overlap_steps` vmapped steps run from the replicas' previous ends
    `x_end` before the global params `theta` arrive (then rebased onto them)."""
    batches = [sim.data.stacked(s) for s in sim.round_steps(round_index)]
    early = run_steps(sim.vstep, x_end, opt_states, batches[:overlap_steps])
    late = run_steps(sim.vstep, rebase(theta, early.params, x_end), early.opt_state, batches[overlap_steps:])
    return late.params, late.opt_state


def run_sparseloco(sim: Simulator, on_round: OnRound, *, overlap_steps: int = 0,
                   name: str = "sparseloco") -> MethodResult:
    cfg = sim.cfg
    tx = sparseloco(beta=cfg.beta, topk=cfg.topk, chunk=cfg.chunk)
    params = sim.params0
    ef_states = [tx.init(params) for _ in range(cfg.replicas)]
    opt_states = jax.jit(jax.vmap(sim.optimizer.init))(sim.replicate(params))
    # alpha_in_ef: the reference adds alpha * delta to the error feedback and steps alpha again
    scale = cfg.alpha if cfg.alpha_in_ef else 1.0
    pseudo_grad = jax.jit(lambda p, s, i: jax.tree.map(lambda a, b: scale * (a - b[i]), p, s))
    table = wire.expected_table(params)
    losses, sizes = [], []
    x_end = None  # overlap: the replicas' params at the end of the previous round
    for r in range(cfg.rounds):
        if x_end is None:
            stacked, opt_states = sim.inner_round(params, opt_states, r)
        else:
            stacked, opt_states = overlapped_round(sim, params, x_end, opt_states, r, overlap_steps)
        received = []
        for i in range(cfg.replicas):
            payload, ef_states[i] = tx.update(pseudo_grad(params, stacked, i), ef_states[i])
            host = {n: type(p)(*(np.asarray(a) for a in p)) for n, p in payload.items()}
            blob = wire.encode(host, {"window": r, "uid": i}, expected=table,
                               chunk=cfg.chunk, topk=cfg.topk)
            sizes.append(len(blob))
            received.append(wire.decode(blob, table, chunk=cfg.chunk, topk=cfg.topk)[0])
        agg = aggregate(received, params, rule=cfg.rule, chunk=cfg.chunk)
        params = outer_step(params, agg, alpha=cfg.alpha)
        if overlap_steps > 0:
            x_end = stacked
        losses.append(sim.evaluate(params))
        on_round(name, r, losses[-1])
    return method_result(name, sim, losses, bytes_per_round=int(np.mean(sizes)))


def run_sparseloco_overlap(sim: Simulator, on_round: OnRound) -> MethodResult:
    return run_sparseloco(sim, on_round, overlap_steps=sim.cfg.overlap_steps, name="sparseloco-overlap")


RUNNERS: dict[str, Callable[[Simulator, OnRound], MethodResult]] = {
    "adamw": run_adamw, "diloco": run_diloco, "sparseloco": run_sparseloco,
    "sparseloco-overlap": run_sparseloco_overlap}
METHODS = tuple(RUNNERS)
