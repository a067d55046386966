"""Which uids to evaluate this window, and the leader's gather/reserve peer list.

Evaluation: up to 20 uids drawn without replacement by weighted random sampling, with
weight = 1 + min(windows since the uid's last evaluation, cap) (cap = 20; a never-evaluated uid
gets the cap), so a uid evaluated last window has weight 2 and a long-unseen one 21. Banned uids
are never drawn. Sampling is Efraimidis-Spirakis: key_i = log(u_i) / w_i with u_i uniform from
`numpy.random.default_rng([selection_seed, window, *seed])`, take the largest keys. The validator
passes `seed` = the window's evaluation seed (gauntlet/eval_seed.py: a block hash after the
upload deadline mixed with its local secret), so no miner can know in advance whether it will be
evaluated; without it the draw is a function of the window alone. Either way it is deterministic
(same state, candidates, window, seed -> same uids) and independent of candidate order.

Gather list: the candidates that are neither banned nor excluded (3 negative evaluations), ranked
by final score (desc), then OpenSkill ordinal (desc), then uid (asc); first `gather` (20) gather,
next `reserve` (10) reserve (the run config's `peers` section). Uids with a non-positive score are still listed after the positive ones, so a fresh
network (all scores 0) still gathers.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import numpy as np

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ConfigError
from templar_jax.gauntlet.state import NEVER, ValidatorState


def staleness_weight(last_eval_window: int, window: int, cfg: GauntletConfig) -> float:
    if last_eval_window == NEVER:
        return 1.0 + cfg.eval_staleness_cap
    since = max(0, window - last_eval_window)
    return 1.0 + min(since, cfg.eval_staleness_cap)


def select_eval_uids(
    state: ValidatorState, candidates: Iterable[int], window: int, cfg: GauntletConfig, *,
    seed: int | None = None,
) -> list[int]:
    """Up to eval_uids_per_window uids (sorted ascending); `seed`: the window's eval seed."""
    uids = sorted({int(u) for u in candidates if not state.peer(u, cfg).is_banned(window)})
    count = min(cfg.eval_uids_per_window, len(uids))
    if count == 0:
        return []
    weights = np.array(
        [staleness_weight(state.peer(u, cfg).last_eval_window, window, cfg) for u in uids]
    )
    entropy = [cfg.selection_seed, int(window)] + ([] if seed is None else [int(seed)])
    rng = np.random.default_rng(entropy)
    u = rng.random(len(uids))
    keys = np.log(np.maximum(u, np.finfo(np.float64).tiny)) / weights
    order = np.argsort(-keys, kind="stable")[:count]
    return sorted(uids[i] for i in order)


class PeerList(NamedTuple):
    gather: list[int]
    reserve: list[int]


def rank_uids(state: ValidatorState, uids: Iterable[int], cfg: GauntletConfig) -> list[int]:
    """Best first: final score desc, ordinal desc, uid asc."""
    def key(uid: int) -> tuple[float, float, int]:
        rec = state.peer(uid, cfg)
        return (-rec.final_score, -rec.ordinal(cfg), uid)

    return sorted({int(u) for u in uids}, key=key)


def select_gather_peers(
    state: ValidatorState, candidates: Iterable[int], window: int, cfg: GauntletConfig, *,
    gather: int, reserve: int,
) -> PeerList:
    """The leader's peer list: `gather` gather + `reserve` reserve peers from the ranking."""
    eligible = [
        u for u in candidates
        if not state.peer(u, cfg).is_banned(window) and not state.peer(u, cfg).excluded
    ]
    ranked = rank_uids(state, eligible, cfg)
    if gather < 0 or reserve < 0:
        raise ConfigError(f"gather={gather} and reserve={reserve} must be >= 0")
    return PeerList(gather=ranked[:gather], reserve=ranked[gather: gather + reserve])
