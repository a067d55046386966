"""Slashing: score penalties for missing, late, invalid, inactive, out-of-sync or harmful miners.

Readings of SPEC sec. 5 that the spec leaves open (documented here, pinned in tests):
- missing/late payload of an EVALUATED uid: final x 0.75 ** k, where k counts the consecutive
  windows without a valid payload including this one (`missing_streak`; the reference's escalating
  penalty: 0.75, 0.5625, 0.42, ... so a peer that keeps skipping uploads loses its score fast,
  while one missed upload costs what SPEC says); `missing_slash_escalates: false` gives a flat
  x 0.75. A result below 1e-4 becomes 0. The streak returns to 0 with the next valid payload and
  survives a record reset (so a reset does not restart the escalation).
- invalid payload (failed decode/validation): final = 0.
- inactivity applies to uids that were NOT evaluated this window (so no uid is slashed twice for
  the same absent payload): each consecutive window without a payload multiplies final by 0.75;
  the 3rd consecutive inactive window resets the uid's record to a new uid's (rating, BMA, score;
  the ban is kept), because a uid that stayed away that long has usually changed hands. The
  counter returns to 0 when the uid submits again.
- poor sync of a GATHER peer: steps behind x > 2 multiplies final by 0.75.
- negative evaluation = LossScore < 0. Three in a row exclude the uid from gather; the next
  evaluation with LossScore > 0 lifts the exclusion and zeroes the streak. A LossScore of exactly
  0 zeroes the streak but does not lift an exclusion.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.state import PeerRecord, ValidatorState


def _shrink(score: float, factor: float, cfg: GauntletConfig) -> float:
    new = score * factor
    return 0.0 if abs(new) < cfg.zero_below else new


def missing_factor(streak: int, cfg: GauntletConfig) -> float:
    """Score multiplier of the `streak`-th consecutive window without a payload."""
    return cfg.missing_slash ** (max(1, streak) if cfg.missing_slash_escalates else 1)


def slash_missing(state: ValidatorState, uid: int, cfg: GauntletConfig) -> ValidatorState:
    """An evaluated uid's payload is missing or late: advance its streak and slash escalating."""
    rec = state.peer(uid, cfg)
    streak = rec.missing_streak + 1
    return state.update_peer(uid, cfg, missing_streak=streak,
                             final_score=_shrink(rec.final_score, missing_factor(streak, cfg), cfg))


def slash_invalid(state: ValidatorState, uid: int, cfg: GauntletConfig) -> ValidatorState:
    return state.update_peer(uid, cfg, final_score=0.0)


def slash_poor_sync(
    state: ValidatorState, uid: int, steps_behind: float, cfg: GauntletConfig
) -> ValidatorState:
    """For a gather peer: x > poor_sync_steps multiplies final by poor_sync_slash."""
    poor = math.isnan(steps_behind) or steps_behind > cfg.poor_sync_steps  # NaN: unmeasurable
    if not poor:
        return state
    rec = state.peer(uid, cfg)
    return state.update_peer(uid, cfg, final_score=_shrink(rec.final_score, cfg.poor_sync_slash, cfg))


def apply_inactivity(
    state: ValidatorState,
    active_uids: Iterable[int],
    cfg: GauntletConfig,
    skip: Iterable[int] = (),
) -> ValidatorState:
    """Advance the inactivity counter of every known uid without a payload this window.

    `active_uids`: uids whose payload arrived this window (their counters return to 0).
    `skip`: uids handled elsewhere this window (the evaluated ones: slash_missing covers them).
    The missing-upload streak of a uid without a payload advances here too (so an evaluation
    after a few silent windows slashes at the escalated rate).
    """
    active = {int(u) for u in active_uids}
    skipped = {int(u) for u in skip}
    peers = dict(state.peers)
    for uid in active:
        peers[uid] = dataclasses.replace(state.peer(uid, cfg), inactive_windows=0, missing_streak=0)
    for uid, rec in state.peers.items():
        if uid in active or uid in skipped:
            continue
        count = rec.inactive_windows + 1
        rec = dataclasses.replace(
            rec,
            inactive_windows=count,
            missing_streak=rec.missing_streak + 1,
            final_score=_shrink(rec.final_score, cfg.inactivity_slash, cfg),
        )
        if count >= cfg.inactivity_reset_windows:
            rec = rec.reset(cfg)
        peers[uid] = rec
    return dataclasses.replace(state, peers=peers)


def track_evaluation_sign(record: PeerRecord, loss_score: float, cfg: GauntletConfig) -> PeerRecord:
    """Negative-streak bookkeeping and gather exclusion for one evaluation."""
    if loss_score < 0:
        streak = record.negative_streak + 1
        excluded = record.excluded or streak >= cfg.negative_evals_to_exclude
        return dataclasses.replace(record, negative_streak=streak, excluded=excluded)
    if loss_score > 0:
        return dataclasses.replace(record, negative_streak=0, excluded=False)
    return dataclasses.replace(record, negative_streak=0)
