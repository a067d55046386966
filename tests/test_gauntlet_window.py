"""score_window: the rules composed over several windows, and resume-after-restart equality."""

import pytest

from templar_jax.gauntlet import scoring
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.state import PeerRecord, ValidatorState, load_state, save_state
from templar_jax.gauntlet.weights import compute_weights
from templar_jax.gauntlet.window import Evaluation, score_window

CFG = GauntletConfig(burn_fraction=0.0)


def honest(uid, gain=0.02):  # own data improves more than random data
    return Evaluation(uid, 3.0, 3.0 * (1 - 2 * gain), 3.0, 3.0 * (1 - gain), steps_behind=0.0)


def lazy(uid):  # improves random and own data equally: indicator -1
    return Evaluation(uid, 3.0, 2.97, 3.0, 2.97, steps_behind=0.0)


def harmful(uid):
    return Evaluation(uid, 3.0, 3.1, 3.0, 3.1, steps_behind=0.0)


def run(state, first, last, evals_for):
    for w in range(first, last):
        evs, missing, invalid = evals_for(w)
        state = score_window(state, w, evs, CFG, missing=missing, invalid=invalid)
    return state


def scenario(w):
    evs = [honest(1), honest(2, gain=0.01), lazy(3), harmful(4)]
    return evs, [5] if w % 2 else [], [6]


def test_one_window_updates_records():
    state = score_window(ValidatorState(), 10, [honest(1), lazy(3)], CFG, missing=[5], invalid=[6])
    r1, r3 = state.peers[1], state.peers[3]
    assert r1.loss_score == pytest.approx(0.02) and r1.bma == pytest.approx(0.05)
    assert r3.bma == pytest.approx(-0.05) and r3.eval_count == 1
    assert r1.mu > r3.mu > state.peers[5].mu and state.peers[6].mu < 25.0  # -99 ranks last
    assert r1.final_score == pytest.approx(scoring.final_score(r1, CFG)) and r1.final_score > 0
    assert r3.final_score == 0.0  # negative BMA
    assert {u: state.peers[u].last_eval_window for u in (1, 3, 5, 6)} == dict.fromkeys((1, 3, 5, 6), 10)
    assert state.window == 10


def test_many_windows_rank_honest_first_and_resume_is_identical(tmp_path):
    straight = run(ValidatorState(), 0, 24, scenario)
    path = tmp_path / "state.json"
    half = run(ValidatorState(), 0, 12, scenario)
    save_state(half, path)
    resumed = run(load_state(path), 12, 24, scenario)
    assert resumed == straight
    p = straight.peers
    assert p[1].final_score > p[2].final_score > 0
    assert p[3].final_score == 0.0 and p[4].final_score == 0.0
    assert p[4].excluded and p[4].negative_streak == 24
    assert p[6].final_score == 0.0
    wv = compute_weights(straight, 24, CFG)
    assert wv.uids == [1, 2] and wv.weights[0] > wv.weights[1]


def test_bad_losses_count_as_invalid_and_sync_feeds_final():
    base = ValidatorState(peers={1: PeerRecord(mu=30.0, sigma=2.0, bma=0.5, eval_count=20,
                                               final_score=3.0)})
    out = score_window(base, 1, [Evaluation(1, 3.0, 2.9, float("nan"), 2.9), honest(2)], CFG)
    assert out.peers[1].final_score == 0.0 and out.peers[1].mu < 30.0
    slow = score_window(base, 1, [honest(1)._replace(steps_behind=1.5), honest(2)], CFG)
    fast = score_window(base, 1, [honest(1), honest(2)], CFG)
    assert slow.peers[1].sync == pytest.approx(0.5**2.5)
    assert slow.peers[1].final_score == pytest.approx(fast.peers[1].final_score * 0.5**2.5)
    keep = score_window(slow, 2, [honest(1)._replace(steps_behind=None), honest(2)], CFG)
    assert keep.peers[1].sync == pytest.approx(0.5**2.5)  # None keeps the last sync
    # a uid reported both measured and missing is treated as missing
    both = score_window(base, 1, [honest(1), honest(2)], CFG, missing=[1])
    assert both.peers[1].final_score == pytest.approx(2.25) and both.peers[1].eval_count == 20
