"""Slashing rules with the readings documented in gauntlet/slashing.py."""

import pytest

from templar_jax.gauntlet import slashing
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.state import PeerRecord, ValidatorState

CFG = GauntletConfig()


def rec(**kw):
    return PeerRecord(**{"mu": 30.0, "sigma": 2.0, "bma": 0.5, "eval_count": 12, **kw})


def test_missing_invalid_and_zero_floor():
    state = ValidatorState(peers={1: rec(final_score=2.0), 2: rec(final_score=1.3e-4),
                                  3: rec(final_score=2.0)})
    state = slashing.slash_missing(state, 1, CFG)
    state = slashing.slash_missing(state, 2, CFG)  # 0.975e-4 < 1e-4 -> 0
    state = slashing.slash_invalid(state, 3, CFG)
    assert state.peers[1].final_score == pytest.approx(1.5)
    assert state.peers[2].final_score == 0.0
    assert state.peers[3].final_score == 0.0
    assert state.peers[1].mu == 30.0  # slashing touches the score, not the rating


def test_inactivity_slashes_per_window_and_resets_on_third():
    state = ValidatorState(peers={1: rec(final_score=4.0, banned_until=50), 2: rec(final_score=4.0),
                                  3: rec(final_score=4.0)})
    seen = []
    for _ in range(3):
        # uid 2 keeps submitting; uid 3 is evaluated (slash_missing's business, skipped here)
        state = slashing.apply_inactivity(state, active_uids=[2, 7], cfg=CFG, skip=[3])
        seen.append((state.peers[1].final_score, state.peers[1].inactive_windows))
    assert seen[:2] == [(pytest.approx(3.0), 1), (pytest.approx(2.25), 2)]
    reset = state.peers[1]
    assert seen[2][1] == 3 and reset.final_score == 0.0
    assert (reset.mu, reset.bma, reset.eval_count) == (CFG.openskill_mu, 0.0, 0)
    assert reset.banned_until == 50  # a reset never lifts a ban
    assert state.peers[2].final_score == 4.0 and state.peers[2].inactive_windows == 0
    assert state.peers[3].final_score == 4.0
    assert state.peers[7].inactive_windows == 0  # a newly seen active uid gets a record
    back = slashing.apply_inactivity(state, active_uids=[1], cfg=CFG)
    assert back.peers[1].inactive_windows == 0


def test_poor_sync_only_above_two_steps():
    state = ValidatorState(peers={1: rec(final_score=2.0)})
    assert slashing.slash_poor_sync(state, 1, 2.0, CFG).peers[1].final_score == 2.0
    assert slashing.slash_poor_sync(state, 1, 2.01, CFG).peers[1].final_score == pytest.approx(1.5)
    assert slashing.slash_poor_sync(state, 1, float("nan"), CFG).peers[1].final_score == pytest.approx(1.5)


def test_three_negative_evaluations_exclude_until_positive():
    r = rec()
    for i, score in enumerate((-0.1, -0.2, -0.01)):
        assert not r.excluded, i
        r = slashing.track_evaluation_sign(r, score, CFG)
    assert r.excluded and r.negative_streak == 3
    r = slashing.track_evaluation_sign(r, 0.0, CFG)  # zero: streak cleared, exclusion kept
    assert r.excluded and r.negative_streak == 0
    r = slashing.track_evaluation_sign(r, -0.1, CFG)
    assert r.excluded and r.negative_streak == 1
    r = slashing.track_evaluation_sign(r, 0.05, CFG)
    assert not r.excluded and r.negative_streak == 0
    two = slashing.track_evaluation_sign(slashing.track_evaluation_sign(rec(), -1, CFG), -1, CFG)
    assert not slashing.track_evaluation_sign(two, 0.1, CFG).excluded
