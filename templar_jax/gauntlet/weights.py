"""Chain weights from final scores.

    burn     = burn_fraction (0.5 in production, to burn_uid = 1; 0 in local runs)
    ranking  = uids with final > 0 and not banned, by final desc then uid asc
    top tier = ranking[:20], share 0.75 of (1 - burn); rank i (0-based) gets
               r_i = ramp - (ramp - 1) * i / 19   (2.0 for the best ... 1.0 for the 20th)
    2nd tier = ranking[20:30], share 0.25 of (1 - burn); rank j gets 0.5 ** j
Each tier's raw weights are normalized to the tier's share. The ramp is defined over the 20 tier
POSITIONS, so with fewer peers the relative weight of rank i vs rank j does not change. Fewer
peers than the tiers: an empty tier's share goes to the non-empty one (tier shares are
renormalized over the tiers that have peers). No positive score at all: all weight goes to
burn_uid (the chain needs a vector summing to 1; burning is the neutral choice). The burn uid's
own earned weight, if it is ranked, adds to its burn share. Output: uids ascending, floats
summing to 1.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.state import ValidatorState


class WeightVector(NamedTuple):
    uids: list[int]
    weights: list[float]


def top_tier_raw(count: int, cfg: GauntletConfig) -> np.ndarray:
    """Linear ramp over tier positions, truncated to `count` peers."""
    size = cfg.top_tier_size
    positions = np.arange(min(count, size), dtype=np.float64)
    step = (cfg.top_tier_ramp - 1.0) / (size - 1) if size > 1 else 0.0
    return cfg.top_tier_ramp - step * positions


def second_tier_raw(count: int, cfg: GauntletConfig) -> np.ndarray:
    return cfg.second_tier_decay ** np.arange(min(count, cfg.second_tier_size), dtype=np.float64)


def ranked_positive(state: ValidatorState, window: int, cfg: GauntletConfig) -> list[int]:
    live = [u for u, r in state.peers.items() if r.final_score > 0 and not r.is_banned(window)]
    return sorted(live, key=lambda u: (-state.peers[u].final_score, u))


def compute_weights(state: ValidatorState, window: int, cfg: GauntletConfig) -> WeightVector:
    ranking = ranked_positive(state, window, cfg)
    top = ranking[: cfg.top_tier_size]
    second = ranking[cfg.top_tier_size: cfg.top_tier_size + cfg.second_tier_size]
    tiers = [(top, top_tier_raw(len(top), cfg), cfg.top_tier_share),
             (second, second_tier_raw(len(second), cfg), cfg.second_tier_share)]
    tiers = [t for t in tiers if t[0] and t[2] > 0]
    total: dict[int, float] = {}
    if not tiers:
        return WeightVector(uids=[cfg.burn_uid], weights=[1.0])
    earned = 1.0 - cfg.burn_fraction
    share_sum = sum(share for _, _, share in tiers)
    for uids, raw, share in tiers:
        tier_weights = raw / raw.sum() * (share / share_sum) * earned
        for uid, w in zip(uids, tier_weights):
            total[uid] = total.get(uid, 0.0) + float(w)
    if cfg.burn_fraction > 0:
        total[cfg.burn_uid] = total.get(cfg.burn_uid, 0.0) + cfg.burn_fraction
    uids = sorted(total)
    weights = np.array([total[u] for u in uids])
    weights = weights / weights.sum()  # exact sum 1 despite float rounding
    return WeightVector(uids=uids, weights=[float(w) for w in weights])
