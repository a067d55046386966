"""A simplified Yuma-style consensus: incentive from stake-weighted validator weights.

LocalChain uses it so the metagraph's `incentive` reflects what validators set, the way it
does on Bittensor (which runs the full Yuma Consensus each tempo). What is kept of Yuma:

    S_v      = stake_v / sum of the stake of validators that set weights (stake > 0)
    W_vj     = validator v's normalized weight on uid j (0 where v set none)
    C_j      = stake-weighted median of W_.j: the largest w such that validators holding
               at least kappa = 1/2 of the stake gave j a weight >= w
    R_j      = sum_v S_v * min(W_vj, C_j)           (weights clipped at consensus)
    incentive_j = R_j / sum_k R_k                   (all zero when no validator set weights)

Clipping at the median is what makes a minority of stake unable to lift a uid on its own.
Left out: bonds, EMA over time, validator trust/dividends, emission splits, commit-reveal.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

KAPPA = 0.5
_TOL = 1e-9


def stake_weighted_median(
    values_and_stake: Sequence[tuple[float, float]], kappa: float = KAPPA
) -> float:
    """Largest value v such that the (normalized) stake on values >= v is at least kappa."""
    cumulative = 0.0
    for value, stake in sorted(values_and_stake, key=lambda vs: -vs[0]):
        cumulative += stake
        if cumulative >= kappa - _TOL:
            return value
    return 0.0


def yuma_incentive(
    uids: Sequence[int],
    stake: Mapping[int, float],
    weights: Mapping[int, Mapping[int, float]],
    kappa: float = KAPPA,
) -> dict[int, float]:
    """Incentive per uid (sums to 1, or all 0) from validators' `weights` and `stake`.

    `weights[v]` is validator v's row {uid: weight}; rows are renormalized here, so raw
    rows work too. Validators without stake, empty rows and weights on uids outside `uids`
    are ignored.
    """
    known = set(uids)
    rows: dict[int, dict[int, float]] = {}
    for v, row in weights.items():
        if stake.get(v, 0.0) <= 0:
            continue
        kept = {j: float(w) for j, w in row.items() if j in known and w > 0}
        total = math.fsum(kept.values())
        if total > 0:
            rows[v] = {j: w / total for j, w in kept.items()}
    total_stake = math.fsum(stake[v] for v in rows)
    if not rows or total_stake <= 0:
        return {uid: 0.0 for uid in uids}
    s_norm = {v: stake[v] / total_stake for v in rows}

    rank: dict[int, float] = {}
    for j in uids:
        column = [(rows[v].get(j, 0.0), s_norm[v]) for v in rows]
        consensus = stake_weighted_median(column, kappa)
        rank[j] = math.fsum(s * min(w, consensus) for w, s in column)
    total_rank = math.fsum(rank.values())
    if total_rank <= 0:
        return {uid: 0.0 for uid in uids}
    return {uid: rank[uid] / total_rank for uid in uids}
