"""The simplified Yuma consensus behind LocalChain's incentive."""

from __future__ import annotations

import random

import pytest

from templar_jax.chain.consensus import stake_weighted_median, yuma_incentive


def test_stake_weighted_median():
    assert stake_weighted_median([(0.9, 0.6), (0.1, 0.4)]) == 0.9
    assert stake_weighted_median([(0.9, 0.4), (0.1, 0.6)]) == 0.1
    assert stake_weighted_median([(0.3, 0.25), (0.2, 0.25), (0.1, 0.5)]) == 0.2
    assert stake_weighted_median([]) == 0.0


def test_single_validator_incentive_equals_its_weights():
    inc = yuma_incentive([0, 1, 2, 3], {0: 10.0, 1: 0, 2: 0, 3: 0}, {0: {1: 2.0, 2: 1.0, 3: 1.0}})
    assert inc == pytest.approx({0: 0.0, 1: 0.5, 2: 0.25, 3: 0.25})


def test_no_weights_or_no_stake_gives_zero_incentive():
    uids = [0, 1, 2]
    assert yuma_incentive(uids, {0: 5.0, 1: 0, 2: 0}, {}) == {0: 0.0, 1: 0.0, 2: 0.0}
    # weights from a validator without stake count for nothing
    assert yuma_incentive(uids, {0: 0.0, 1: 0, 2: 0}, {0: {1: 1.0}}) == {0: 0.0, 1: 0.0, 2: 0.0}


def test_majority_stake_decides_and_minority_is_clipped():
    stake = {0: 900.0, 1: 100.0, 2: 0.0, 3: 0.0}
    inc = yuma_incentive([0, 1, 2, 3], stake, {0: {2: 1.0}, 1: {3: 1.0}})
    assert inc[2] == pytest.approx(1.0) and inc[3] == pytest.approx(0.0)
    # flip the stake and the other miner wins
    inc = yuma_incentive([0, 1, 2, 3], {0: 100.0, 1: 900.0, 2: 0, 3: 0}, {0: {2: 1.0}, 1: {3: 1.0}})
    assert inc[3] == pytest.approx(1.0) and inc[2] == pytest.approx(0.0)


def test_incentive_moves_with_stake_weighted_agreement():
    stake = {0: 600.0, 1: 400.0, 2: 0.0, 3: 0.0}
    weights = {0: {2: 0.7, 3: 0.3}, 1: {2: 0.2, 3: 0.8}}
    inc = yuma_incentive([0, 1, 2, 3], stake, weights)
    # consensus: uid2 -> 0.7 (60 % of stake at >= 0.7), uid3 -> 0.3
    rank2 = 0.6 * 0.7 + 0.4 * 0.2
    rank3 = 0.6 * 0.3 + 0.4 * 0.3
    assert inc[2] == pytest.approx(rank2 / (rank2 + rank3))
    assert inc[3] == pytest.approx(rank3 / (rank2 + rank3))
    assert inc[2] > inc[3]


def test_unknown_uids_and_raw_rows_are_handled():
    inc = yuma_incentive([0, 1], {0: 1.0, 1: 0.0}, {0: {1: 5.0, 9: 5.0}})
    assert inc == pytest.approx({0: 0.0, 1: 1.0})


def test_random_networks_sum_to_one_and_are_non_negative():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 12)
        uids = list(range(n))
        stake = {u: (rng.random() * 1000 if rng.random() < 0.4 else 0.0) for u in uids}
        weights = {
            v: {u: rng.random() for u in rng.sample(uids, rng.randint(1, n))}
            for v in uids if rng.random() < 0.7
        }
        inc = yuma_incentive(uids, stake, weights)
        assert set(inc) == set(uids)
        assert all(x >= 0 for x in inc.values())
        total = sum(inc.values())
        assert total == pytest.approx(1.0) or total == 0.0
        has_votes = any(stake[v] > 0 and any(w > 0 for w in row.values())
                        for v, row in weights.items())
        if not has_votes:
            assert total == 0.0


def test_no_stake_majority_means_no_incentive():
    # three equal validators each backing a different miner: no uid reaches consensus
    stake = {0: 1.0, 1: 1.0, 2: 1.0, 3: 0, 4: 0, 5: 0}
    inc = yuma_incentive(list(range(6)), stake, {0: {3: 1.0}, 1: {4: 1.0}, 2: {5: 1.0}})
    assert all(v == 0.0 for v in inc.values())
