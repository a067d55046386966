"""templar_jax.experiment: research experiments that run in one process, no network or chain
(`templar-jax experiment compare`: AdamW DDP vs DiLoCo vs SparseLoCo on R replicas).

It uses the wings (model, train, sparseloco, wire, data) as a caller; sparseloco/ stays pure."""

from templar_jax.experiment.compare import compare
from templar_jax.experiment.config import SimConfig
from templar_jax.experiment.methods import METHODS, MethodResult

__all__ = ["METHODS", "MethodResult", "SimConfig", "compare"]
