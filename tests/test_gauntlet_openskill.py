"""OpenSkill Plackett-Luce round: direction of scores, -99 for failures, and pinned numbers.

The expected numbers come from an independent numpy transcription of Weng & Lin (2011),
Algorithm 4 (Plackett-Luce), with tau^2 added to sigma^2 first, gamma = sigma / c, kappa = 1e-4,
as the openskill package documents; the test fails if the package or our call disagrees.
"""

import numpy as np
import pytest

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.openskill_rank import ordinal, update_ratings, window_scores
from templar_jax.gauntlet.state import PeerRecord, ValidatorState

CFG = GauntletConfig()


def weng_lin_plackett_luce(mu, sigma, scores, beta=7.0, tau=0.1):
    mu, sigma, scores = (np.asarray(a, np.float64) for a in (mu, sigma, scores))
    n = len(mu)
    rank = np.array([np.sum(scores > s) for s in scores])  # 0 = best; ties share a rank
    s2 = sigma**2 + tau**2
    c = np.sqrt(np.sum(s2 + beta**2))
    e = np.exp(mu / c)
    big_c = np.array([e[rank >= rank[q]].sum() for q in range(n)])
    a = np.array([np.sum(rank == rank[q]) for q in range(n)])
    new_mu, new_sigma = mu.copy(), sigma.copy()
    for i in range(n):
        omega = delta = 0.0
        for q in range(n):
            if rank[q] <= rank[i]:
                p = e[i] / big_c[q]
                omega += ((q == i) - p) / a[q]
                delta += p * (1 - p) / a[q]
        gamma = np.sqrt(s2[i]) / c
        new_mu[i] = mu[i] + s2[i] / c * omega
        new_sigma[i] = np.sqrt(s2[i] * max(1 - gamma * s2[i] / c**2 * delta, 1e-4))
    return new_mu, new_sigma


def test_fresh_three_uid_round_pinned_numbers():
    state = update_ratings(ValidatorState(), {7: 0.5, 3: -99.0, 5: 0.1}, CFG)
    got = {u: (state.peers[u].mu, state.peers[u].sigma) for u in (3, 5, 7)}
    # Pinned (and equal to the reference transcription below).
    assert got[7] == pytest.approx((27.456249477209283, 8.253534696231965), abs=1e-9)
    assert got[5] == pytest.approx((25.61406236930232, 8.162139691070465), abs=1e-9)
    assert got[3] == pytest.approx((21.929688153488396, 8.162139691070465), abs=1e-9)
    mu, sigma = weng_lin_plackett_luce([25.0] * 3, [25 / 3] * 3, [-99.0, 0.1, 0.5])
    for i, uid in enumerate((3, 5, 7)):
        assert got[uid] == pytest.approx((mu[i], sigma[i]), abs=1e-9)
    assert state.peers[7].ordinal(CFG) == pytest.approx(27.456249477209283 - 3 * 8.253534696231965)


def test_unequal_priors_and_ties_match_transcription():
    peers = {1: PeerRecord(mu=30.0, sigma=4.0), 2: PeerRecord(mu=22.0, sigma=6.0),
             3: PeerRecord(mu=25.0, sigma=8.0), 4: PeerRecord(mu=27.0, sigma=3.0)}
    scores = {1: 0.01, 2: 0.03, 3: 0.03, 4: -0.02}
    state = update_ratings(ValidatorState(peers=peers), scores, CFG)
    mu, sigma = weng_lin_plackett_luce([30, 22, 25, 27], [4, 6, 8, 3], [0.01, 0.03, 0.03, -0.02])
    for i, uid in enumerate((1, 2, 3, 4)):
        assert (state.peers[uid].mu, state.peers[uid].sigma) == pytest.approx((mu[i], sigma[i]), abs=1e-9)
    assert state.peers[2].mu > 22.0 and state.peers[4].mu < 27.0  # higher score = better


def test_window_scores_give_failures_minus_99_and_single_uid_is_noop():
    scores = window_scores({1: 0.2, 2: float("nan"), 3: 0.1}, failed_uids=[3, 4], cfg=CFG)
    assert scores == {1: 0.2, 2: -99.0, 3: -99.0, 4: -99.0}
    state = ValidatorState()
    assert update_ratings(state, {1: 0.5}, CFG) is state
    assert ordinal(25.0, 25 / 3, CFG) == pytest.approx(0.0)
