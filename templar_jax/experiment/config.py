"""The settings of one in-process comparison (`templar-jax experiment compare`)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class SimConfig:
    model: str = "tiny"
    replicas: int = 4
    inner_steps: int = 15
    rounds: int = 10
    batch: int = 8               # sequences per replica per inner step
    inner_lr: float = 1e-3
    warmup_steps: int = 10
    cosine_steps: int = 0        # inner cosine length after the warmup; 0: to the run's end
    data: str = "bundled"        # bundled | synthetic
    n_eval: int = 128
    seed: int = 0
    diloco_lr: float = 0.7
    diloco_momentum: float = 0.9
    alpha: float = 1.0           # SparseLoCo outer SGD
    alpha_in_ef: bool = False    # the reference's form: e = beta*e + alpha*delta, then -alpha*agg
    beta: float = 0.95
    topk: int = 64
    chunk: int = 64
    rule: str = "median_clip"
    overlap_steps: int = 2       # sparseloco-overlap: inner steps run before the late outer step lands
