"""OpenSkill Plackett-Luce ratings, updated once per window from that window's scores.

Each evaluated uid is a one-player team; `PlackettLuce.rate(teams, scores=...)` treats a HIGHER
score as a better placing (checked in tests: the top scorer gains mu). Missing, late or invalid
submissions enter the round with `missing_score` (-99), so they rank last and lose mu. The model
adds tau^2 to each sigma^2 before the update (keeps ratings movable); beta = 7 sets how much a
single placing moves mu. A window with fewer than two scored uids updates nothing: Plackett-Luce
needs at least two teams to rank. Ratings persist per uid as (mu, sigma) in the PeerRecord.
"""

from __future__ import annotations

import functools
import math
from typing import Iterable, Mapping

from openskill.models import PlackettLuce

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.state import ValidatorState


@functools.lru_cache(maxsize=8)
def _model(beta: float, tau: float, mu: float, sigma: float) -> PlackettLuce:
    return PlackettLuce(mu=mu, sigma=sigma, beta=beta, tau=tau)


def rating_model(cfg: GauntletConfig) -> PlackettLuce:
    return _model(cfg.openskill_beta, cfg.openskill_tau, cfg.openskill_mu, cfg.openskill_sigma)


def window_scores(
    loss_scores: Mapping[int, float],
    failed_uids: Iterable[int],
    cfg: GauntletConfig,
) -> dict[int, float]:
    """The scores one window's OpenSkill round sees.

    `loss_scores`: LossScore of each successfully evaluated uid; a non-finite score counts as a
    failure. `failed_uids`: evaluated uids whose payload was missing, late or invalid; they get
    `missing_score` (and override any loss score given for the same uid).
    """
    scores = {
        int(uid): (float(s) if math.isfinite(float(s)) else cfg.missing_score)
        for uid, s in loss_scores.items()
    }
    for uid in failed_uids:
        scores[int(uid)] = cfg.missing_score
    return scores


def update_ratings(
    state: ValidatorState, scores: Mapping[int, float], cfg: GauntletConfig
) -> ValidatorState:
    """One Plackett-Luce round over the uids in `scores` (higher score = better)."""
    if len(scores) < 2:
        return state
    uids = sorted(int(u) for u in scores)
    model = rating_model(cfg)
    teams = []
    for uid in uids:
        rec = state.peer(uid, cfg)
        teams.append([model.rating(mu=rec.mu, sigma=rec.sigma, name=str(uid))])
    rated = model.rate(teams, scores=[float(scores[uid]) for uid in uids])
    for uid, team in zip(uids, rated):
        state = state.update_peer(uid, cfg, mu=float(team[0].mu), sigma=float(team[0].sigma))
    return state


def ordinal(mu: float, sigma: float, cfg: GauntletConfig) -> float:
    """Conservative skill estimate mu - z * sigma (z = 3)."""
    return float(mu) - cfg.ordinal_z * float(sigma)
