"""Weight tiers: 75% on a 2:1 linear ramp for the top 20, 25% on 0.5^i for the next 10, burn."""

import numpy as np
import pytest

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.state import PeerRecord, ValidatorState
from templar_jax.gauntlet.weights import compute_weights, top_tier_raw

CFG = GauntletConfig()


def state_with_scores(scores):
    return ValidatorState(peers={u: PeerRecord(mu=25.0, sigma=8.0, final_score=s)
                                 for u, s in scores.items()})


def test_full_tiers_with_production_burn():
    # uids 100..139 with scores 40..1 (uid 100 best); 10 uids below the 30 ranked + 2 non-positive
    scores = {100 + i: float(40 - i) for i in range(40)}
    scores.update({200: 0.0, 201: -3.0})
    wv = compute_weights(state_with_scores(scores), window=0, cfg=CFG)
    w = dict(zip(wv.uids, wv.weights))
    assert wv.uids == sorted(wv.uids) and sum(wv.weights) == pytest.approx(1.0, abs=1e-12)
    assert w[1] == pytest.approx(0.5)
    top = np.array([w[100 + i] for i in range(20)])
    second = np.array([w[120 + i] for i in range(10)])
    assert top.sum() == pytest.approx(0.375) and second.sum() == pytest.approx(0.125)
    assert top[0] / top[19] == pytest.approx(2.0)
    np.testing.assert_allclose(np.diff(top), np.diff(top)[0])  # linear
    assert top[0] == pytest.approx(0.375 * 2.0 / 30.0)  # ramp 2..1 over 20 sums to 30
    np.testing.assert_allclose(second[1:] / second[:-1], 0.5)
    assert second[0] == pytest.approx(0.125 / (2 - 0.5**9))
    assert not any(u in w for u in (130, 139, 200, 201))


def test_local_run_fewer_peers_renormalize_and_keep_ramp_positions():
    cfg = GauntletConfig(burn_fraction=0.0)
    wv = compute_weights(state_with_scores({3: 1.0, 4: 3.0, 5: 2.0, 6: 0.0}), window=0, cfg=cfg)
    assert wv.uids == [3, 4, 5]
    raw = top_tier_raw(3, cfg)  # 2, 1.947.., 1.894..
    np.testing.assert_allclose(wv.weights, [raw[2], raw[0], raw[1]] / raw.sum())
    many = {u: float(100 - u) for u in range(24)}  # second tier has 4 peers
    w = dict(zip(*compute_weights(state_with_scores(many), 0, cfg)))
    assert sum(w[u] for u in range(20)) == pytest.approx(0.75)
    assert sum(w[u] for u in range(20, 24)) == pytest.approx(0.25)
    assert w[20] / w[21] == pytest.approx(2.0)


def test_no_positive_scores_burns_everything_and_banned_get_nothing():
    assert compute_weights(state_with_scores({2: 0.0}), 0, CFG) == ([1], [1.0])
    banned = ValidatorState(peers={2: PeerRecord(mu=25.0, sigma=8.0, final_score=5.0, banned_until=9),
                                   3: PeerRecord(mu=25.0, sigma=8.0, final_score=1.0)})
    wv = compute_weights(banned, window=5, cfg=GauntletConfig(burn_fraction=0.0))
    assert wv == ([3], [1.0])
    # burn uid that is also ranked: its earned share adds to the burn
    wv = compute_weights(state_with_scores({1: 2.0, 2: 1.0}), 0, CFG)
    raw = top_tier_raw(2, CFG)
    assert dict(zip(*wv))[1] == pytest.approx(0.5 + 0.5 * raw[0] / raw.sum())
