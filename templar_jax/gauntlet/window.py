"""Apply one window's evaluation results to the state (composition of the rules, no I/O).

The validator loop measures the losses and the sync x and calls, per window, in this order:
  1. `score_window(...)`           evaluations -> LossScore, BMA, OpenSkill round, finals, slashes
  2. `copy_detect.detect_copies` + `apply_copy_verdicts`  (on the gathered payloads)
  3. `slashing.slash_poor_sync`    for gather peers with x > 2
  4. `slashing.apply_inactivity`   for uids without a payload, skipping the evaluated ones
  5. `weights.compute_weights`, `selection.select_gather_peers` when due
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Iterable, NamedTuple

from templar_jax.gauntlet import scoring, slashing
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.gauntlet.openskill_rank import update_ratings, window_scores
from templar_jax.gauntlet.state import ValidatorState
from templar_jax.gauntlet.sync import sync_score

log = logging.getLogger(__name__)


class Evaluation(NamedTuple):
    """What the validator measured for one evaluated uid whose payload was valid."""

    uid: int
    loss_own_before: float
    loss_own_after: float
    loss_rand_before: float
    loss_rand_after: float
    steps_behind: float | None = None  # sync x; None keeps the uid's last sync score


def score_window(
    state: ValidatorState,
    window: int,
    evaluations: Iterable[Evaluation],
    cfg: GauntletConfig,
    *,
    missing: Iterable[int] = (),
    invalid: Iterable[int] = (),
) -> ValidatorState:
    """Score the evaluated uids of `window`.

    `missing`: evaluated uids whose payload was absent or late (-99 in OpenSkill, final x 0.75).
    `invalid`: evaluated uids whose payload failed validation (-99 in OpenSkill, final = 0).
    An Evaluation with unusable losses (non-finite, non-positive baseline) counts as invalid.
    """
    invalid_set = {int(u) for u in invalid}
    missing_set = {int(u) for u in missing} - invalid_set
    losses: dict[int, float] = {}
    for ev in evaluations:
        uid = int(ev.uid)
        if uid in invalid_set or uid in missing_set:
            continue  # the caller's failure verdict wins over a measurement
        try:
            rel_own = scoring.relative_improvement(ev.loss_own_before, ev.loss_own_after)
            rel_rand = scoring.loss_score(ev.loss_rand_before, ev.loss_rand_after)
        except ScoreInputError as exc:
            log.warning("window %d uid %d: evaluation unusable (%s); scored as invalid", window, uid, exc)
            invalid_set.add(uid)
            continue
        rec = state.peer(uid, cfg)
        indicator = scoring.binary_indicator(rel_own, rel_rand)
        rec = dataclasses.replace(
            rec,
            loss_score=rel_rand,
            bma=scoring.update_bma(rec.bma, indicator, cfg),
            eval_count=rec.eval_count + 1,
            last_eval_window=window,
        )
        if ev.steps_behind is not None:
            x = float(ev.steps_behind)
            rec = dataclasses.replace(rec, steps_behind=x if math.isfinite(x) else cfg.sync_max_steps,
                                      sync=sync_score(x, cfg))
        state = state.with_peer(uid, slashing.track_evaluation_sign(rec, rel_rand, cfg))
        losses[uid] = rel_rand
    state = update_ratings(state, window_scores(losses, missing_set | invalid_set, cfg), cfg)
    for uid in losses:
        state = state.update_peer(uid, cfg, final_score=scoring.final_score(state.peer(uid, cfg), cfg))
    for uid in sorted(missing_set):
        state = slashing.slash_missing(state, uid, cfg)
        state = state.update_peer(uid, cfg, last_eval_window=window)
    for uid in sorted(invalid_set):
        state = slashing.slash_invalid(state, uid, cfg)
        state = state.update_peer(uid, cfg, last_eval_window=window)
    return dataclasses.replace(state, window=max(state.window, int(window)))
