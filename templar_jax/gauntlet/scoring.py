"""LossScore, the own-vs-random binary indicator, its moving average (BMA) and the final score.

SPEC sec. 5. For one evaluated miner the validator measures the loss on 8 sequences of the miner's
own assigned data and of random data, before and after applying that miner's update alone:

    loss_score  = (L_rand_before - L_rand_after) / L_rand_before      (relative improvement)
    indicator   = +1 if rel_own > rel_rand else -1     (a miner that trained on its assigned data
                                                        helps that data more than random data)
    bma         = (1 - alpha) * bma + alpha * indicator               (alpha = 0.05)
    effective   = 0 if (evals >= 10 and bma < 0.10) else bma
    final       = ordinal * max(0, effective) * sync
"""

from __future__ import annotations

import math

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.gauntlet.state import PeerRecord


def relative_improvement(loss_before: float, loss_after: float) -> float:
    """(before - after) / before; positive when the update lowered the loss.

    Raises ScoreInputError for a non-finite loss or a non-positive baseline (a cross-entropy
    is > 0, so either means the evaluation itself is broken and must not score anyone).
    """
    before, after = float(loss_before), float(loss_after)
    if not (math.isfinite(before) and math.isfinite(after)):
        raise ScoreInputError(f"non-finite loss (before={before}, after={after})")
    if before <= 0.0:
        raise ScoreInputError(f"baseline loss must be > 0, got {before}")
    return (before - after) / before


def loss_score(loss_rand_before: float, loss_rand_after: float) -> float:
    """The LossScore: relative improvement of the random-data loss."""
    return relative_improvement(loss_rand_before, loss_rand_after)


def binary_indicator(own_improvement: float, rand_improvement: float) -> int:
    """+1 if the own-data relative improvement beats the random-data one, else -1 (ties: -1)."""
    return 1 if own_improvement > rand_improvement else -1


def update_bma(bma: float, indicator: int, cfg: GauntletConfig) -> float:
    """Exponential moving average of the indicator; starts from 0 for a new uid."""
    return (1.0 - cfg.bma_alpha) * bma + cfg.bma_alpha * float(indicator)


def effective_bma(bma: float, eval_count: int, cfg: GauntletConfig) -> float:
    """The BMA as used in the final score: after the warm-up, a BMA below bma_min counts as 0.

    During the warm-up (eval_count < bma_warmup_evals) the BMA is used as is, so a new honest
    miner (BMA 0.05, 0.0975, ... after 1, 2, ... positive evaluations) can earn before it reaches
    0.10. The final score clips negatives separately (max(0, BMA)).
    """
    if eval_count >= cfg.bma_warmup_evals and bma < cfg.bma_min:
        return 0.0
    return bma


def combine_final(ordinal: float, bma_effective: float, sync: float) -> float:
    """final = ordinal * max(0, BMA) * sync."""
    return float(ordinal) * max(0.0, float(bma_effective)) * float(sync)


def final_score(record: PeerRecord, cfg: GauntletConfig) -> float:
    """The final score of a record from its current rating, BMA and last sync score."""
    bma = effective_bma(record.bma, record.eval_count, cfg)
    return combine_final(record.ordinal(cfg), bma, record.sync)
