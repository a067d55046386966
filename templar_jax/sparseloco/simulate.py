"""In-process comparison of AdamW DDP, DiLoCo and SparseLoCo on R replicas of one model.

Same model, same inner optimizer (AdamW + warmup/cosine + clip), same data order and the same
token budget (replicas x inner_steps x rounds x batch sequences) for every method:

* adamw:      DDP. Every inner step the replicas' gradients are averaged (one step on the
              union of their batches): sends a dense gradient per step.
* diloco:     each replica takes H inner steps, full-precision pseudo-gradients theta0 - theta_r
              are averaged, outer Nesterov SGD (lr 0.7, momentum 0.9).
* sparseloco: same inner loop; each replica compresses its pseudo-gradient with error feedback
              (top-64/4096 = 1.56% density, 2-bit), the payloads go through the real wire
              encoder/decoder, aggregation per SPEC 2.4, outer SGD alpha 1.0.

Replicas are vmapped (one jitted step trains all R). Inner optimizer state persists across rounds.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from templar_jax.sparseloco.aggregate import aggregate
from templar_jax.sparseloco.sim_data import ReplicaData
from templar_jax.sparseloco.transform import outer_step, sparseloco

log = logging.getLogger(__name__)
METHODS = ("adamw", "diloco", "sparseloco")


@dataclasses.dataclass(frozen=True)
class SimConfig:
    model: str = "tiny"
    replicas: int = 4
    inner_steps: int = 15
    rounds: int = 10
    batch: int = 8               # sequences per replica per inner step
    inner_lr: float = 1e-3
    warmup_steps: int = 10
    data: str = "bundled"        # bundled | synthetic
    n_eval: int = 128
    seed: int = 0
    diloco_lr: float = 0.7
    diloco_momentum: float = 0.9
    alpha: float = 1.0           # SparseLoCo outer SGD
    beta: float = 0.95
    topk: int = 64
    chunk: int = 64
    rule: str = "median_clip"


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


class Simulator:
    """Shared pieces: model, jitted (vmapped) inner step, evaluation, data."""

    def __init__(self, cfg: SimConfig):
        from templar_jax.model import init_params, load_model_config
        from templar_jax.train.loss import loss_fn
        from templar_jax.train.optimizer import TrainConfig, make_inner_optimizer
        from templar_jax.train.step import make_train_step

        self.cfg = cfg
        self.model_cfg = load_model_config(cfg.model)
        self.seq_len = self.model_cfg.max_seq_len
        self.data = ReplicaData(cfg.data, replicas=cfg.replicas, batch=cfg.batch,
                                seq_len=self.seq_len, vocab_size=self.model_cfg.vocab_size,
                                n_eval=cfg.n_eval, seed=cfg.seed)
        total_steps = cfg.inner_steps * cfg.rounds
        train_cfg = TrainConfig(lr=cfg.inner_lr, warmup_steps=cfg.warmup_steps,
                                cosine_steps=max(total_steps - cfg.warmup_steps, 1))
        self.optimizer = make_inner_optimizer(train_cfg)
        self.params0 = init_params(self.model_cfg, cfg.seed)
        self.numel = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(self.params0))
        step = make_train_step(self.model_cfg, self.optimizer, pad_id=self.data.pad_id, donate=False)
        self.step = step
        self.vstep = jax.jit(jax.vmap(step))
        model_cfg, pad_id = self.model_cfg, self.data.pad_id
        self.eval_loss = jax.jit(lambda p, b: loss_fn(p, b, model_cfg, pad_id)[0])
        self.tokens_per_round = cfg.replicas * cfg.inner_steps * cfg.batch * self.seq_len

    def evaluate(self, params) -> float:
        return float(self.eval_loss(params, jnp.asarray(self.data.heldout)))

    def replicate(self, tree):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (self.cfg.replicas,) + x.shape), tree)

    def inner_round(self, params, opt_states, round_index: int):
        """H vmapped inner steps from the broadcast global params -> stacked replica params."""
        stacked = self.replicate(params)
        for h in range(self.cfg.inner_steps):
            batch = jnp.asarray(self.data.stacked(round_index * self.cfg.inner_steps + h))
            stacked, opt_states, _ = self.vstep(stacked, opt_states, batch)
        return stacked, opt_states


def run_adamw(sim: Simulator, on_round: Callable[[str, int, float], None]) -> MethodResult:
    cfg = sim.cfg
    params, opt = sim.params0, jax.jit(sim.optimizer.init)(sim.params0)
    losses = []
    for r in range(cfg.rounds):
        for h in range(cfg.inner_steps):
            batch = sim.data.stacked(r * cfg.inner_steps + h).reshape(-1, sim.seq_len)
            params, opt, _ = sim.step(params, opt, jnp.asarray(batch))
        losses.append(sim.evaluate(params))
        on_round("adamw", r, losses[-1])
    return _result("adamw", sim, losses, bytes_per_round=4 * sim.numel * cfg.inner_steps)


def run_diloco(sim: Simulator, on_round) -> MethodResult:
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
    return _result("diloco", sim, losses, bytes_per_round=4 * sim.numel)


def run_sparseloco(sim: Simulator, on_round) -> MethodResult:
    from templar_jax import wire

    cfg = sim.cfg
    tx = sparseloco(beta=cfg.beta, topk=cfg.topk, chunk=cfg.chunk)
    params = sim.params0
    ef_states = [tx.init(params) for _ in range(cfg.replicas)]
    opt_states = jax.jit(jax.vmap(sim.optimizer.init))(sim.replicate(params))
    pseudo_grad = jax.jit(lambda p, s, i: jax.tree.map(lambda a, b: a - b[i], p, s))
    table = wire.expected_table(params)
    losses, sizes = [], []
    for r in range(cfg.rounds):
        stacked, opt_states = sim.inner_round(params, opt_states, r)
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
        losses.append(sim.evaluate(params))
        on_round("sparseloco", r, losses[-1])
    return _result("sparseloco", sim, losses, bytes_per_round=int(np.mean(sizes)))


def _result(method, sim, losses, bytes_per_round) -> MethodResult:
    rounds = list(range(1, len(losses) + 1))
    return MethodResult(method, rounds, [r * sim.tokens_per_round for r in rounds],
                        [float(x) for x in losses], int(bytes_per_round), 0.0)


RUNNERS = {"adamw": run_adamw, "diloco": run_diloco, "sparseloco": run_sparseloco}


def compare(cfg: SimConfig, methods=METHODS, on_round=None) -> dict:
    """Run the methods; returns a JSON-ready dict (config, initial loss, per-method results)."""
    on_round = on_round or (lambda m, r, loss: log.info("%s round %d: held-out loss %.4f", m, r + 1, loss))
    sim = Simulator(cfg)
    out = {"config": dataclasses.asdict(cfg), "params": sim.numel, "seq_len": sim.seq_len,
           "tokens_per_round": sim.tokens_per_round, "initial_loss": sim.evaluate(sim.params0),
           "data_train_samples": sim.data.train_samples, "results": {}}
    for m in methods:
        if m not in RUNNERS:
            raise ValueError(f"unknown method {m!r}; expected some of {METHODS}")
        t0 = time.perf_counter()
        res = RUNNERS[m](sim, on_round)
        res.seconds = round(time.perf_counter() - t0, 1)
        d = dataclasses.asdict(res)
        d["final_loss"] = res.final_loss
        d["ratio_vs_fp32"] = 4 * sim.numel / res.bytes_per_replica_per_round
        d["ratio_vs_bf16"] = 2 * sim.numel / res.bytes_per_replica_per_round
        d["bits_per_param"] = 8 * res.bytes_per_replica_per_round / sim.numel
        out["results"][m] = d
        if not math.isfinite(res.final_loss):
            log.warning("%s diverged (final loss %s)", m, res.final_loss)
    return out
