"""In-process comparison of AdamW DDP, DiLoCo and SparseLoCo on R replicas of one model.

Same model, same inner optimizer (AdamW + warmup/cosine + clip), same data order and the same
token budget (replicas x inner_steps x rounds x batch sequences) for every method (the methods
are described in `experiment/methods.py`). Replicas are vmapped (one jitted step trains all R).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time

from templar_jax.experiment.config import SimConfig
from templar_jax.experiment.methods import METHODS, RUNNERS, OnRound
from templar_jax.experiment.simulator import Simulator

log = logging.getLogger(__name__)


def log_round(method: str, r: int, loss: float) -> None:
    log.info("%s round %d: held-out loss %.4f", method, r + 1, loss)


def compare(cfg: SimConfig, methods=METHODS, on_round: OnRound | None = None) -> dict:
    """Run the methods; returns a JSON-ready dict (config, initial loss, per-method results)."""
    on_round = on_round or log_round
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
