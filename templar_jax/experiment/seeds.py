"""`experiment compare` over several seeds: each seed is one whole comparison (its own init and
its own data partition and order, `SimConfig.seed`); the summary gives, per method, the mean and
spread of the held-out loss per round and at the end.

Every method in one seed trains on the same tokens, so the per-seed difference between two
methods is paired; `summary[m]["gap_vs"]` reports those paired gaps against every other method.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from templar_jax.experiment.compare import compare
from templar_jax.experiment.config import SimConfig
from templar_jax.experiment.methods import METHODS, OnRound


def spread(values: Sequence[float]) -> dict:
    """mean, sample std (0 for one value), min and max of `values`."""
    v = np.asarray(values, np.float64)
    std = float(np.std(v, ddof=1)) if v.size > 1 else 0.0
    return {"mean": float(np.mean(v)), "std": std, "min": float(np.min(v)), "max": float(np.max(v)),
            "n": int(v.size)}


def summarize(runs: Sequence[dict]) -> dict:
    """Per method: final-loss spread, per-round mean/std curve, paired gaps to the others, and
    what it sends (the same for every seed)."""
    methods = list(runs[0]["results"])
    finals = {m: [run["results"][m]["final_loss"] for run in runs] for m in methods}
    out = {}
    for m in methods:
        curves = np.asarray([run["results"][m]["heldout_loss"] for run in runs], np.float64)
        first = runs[0]["results"][m]
        out[m] = {
            "final": spread(finals[m]),
            "curve_mean": curves.mean(axis=0).tolist(),
            "curve_std": (curves.std(axis=0, ddof=1) if len(runs) > 1
                          else np.zeros(curves.shape[1])).tolist(),
            "rounds": first["rounds"], "tokens": first["tokens"],
            "bytes_per_replica_per_round": first["bytes_per_replica_per_round"],
            "bits_per_param": first["bits_per_param"], "ratio_vs_fp32": first["ratio_vs_fp32"],
            "seconds": spread([run["results"][m]["seconds"] for run in runs]),
            "gap_vs": {o: spread(np.subtract(finals[m], finals[o])) for o in methods if o != m},
        }
    return out


def compare_seeds(cfg: SimConfig, seeds: Sequence[int], methods=METHODS,
                  on_round: OnRound | None = None) -> dict:
    """`compare` once per seed (cfg with that seed); returns the runs and their summary."""
    if not seeds:
        raise ValueError("compare_seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"repeated seed in {list(seeds)}")
    runs = [compare(dataclasses.replace(cfg, seed=int(s)), methods, on_round=on_round)
            for s in seeds]
    summary = summarize(runs)
    for m, s in summary.items():
        if not math.isfinite(s["final"]["mean"]):
            s["diverged_seeds"] = [int(seed) for seed, run in zip(seeds, runs)
                                   if not math.isfinite(run["results"][m]["final_loss"])]
    first = runs[0]
    return {"config": dataclasses.asdict(cfg), "seeds": [int(s) for s in seeds],
            "params": first["params"], "seq_len": first["seq_len"],
            "tokens_per_round": first["tokens_per_round"],
            "tokens_per_method": first["tokens_per_round"] * cfg.rounds,
            "initial_loss": spread([run["initial_loss"] for run in runs]),
            "summary": summary, "runs": runs}
