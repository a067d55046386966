"""LossScore, indicator, BMA and final-score numbers (SPEC sec. 5), plus config checks."""

import math

import pytest

from templar_jax.gauntlet import scoring
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ConfigError, ScoreInputError
from templar_jax.gauntlet.state import PeerRecord

CFG = GauntletConfig()


def test_loss_score_is_relative_random_improvement():
    assert scoring.loss_score(4.0, 3.0) == pytest.approx(0.25)
    assert scoring.loss_score(2.0, 2.5) == pytest.approx(-0.25)
    assert scoring.loss_score(3.0, 3.0) == 0.0


@pytest.mark.parametrize("before,after", [(float("nan"), 1.0), (1.0, float("inf")), (0.0, 1.0), (-1.0, -2.0)])
def test_unusable_losses_raise_typed_error(before, after):
    with pytest.raises(ScoreInputError):
        scoring.relative_improvement(before, after)


def test_binary_indicator_needs_strictly_better_own_improvement():
    assert scoring.binary_indicator(0.02, 0.01) == 1
    assert scoring.binary_indicator(0.01, 0.02) == -1
    assert scoring.binary_indicator(0.01, 0.01) == -1


def test_bma_sequence_with_alpha_005():
    bma = 0.0
    seen = []
    for ind in (1, 1, -1):
        bma = scoring.update_bma(bma, ind, CFG)
        seen.append(bma)
    # 0.05; 0.95*0.05+0.05 = 0.0975; 0.95*0.0975-0.05 = 0.042625
    assert seen == pytest.approx([0.05, 0.0975, 0.042625])
    # n positive indicators from 0: 1 - 0.95**n
    bma = 0.0
    for _ in range(10):
        bma = scoring.update_bma(bma, 1, CFG)
    assert bma == pytest.approx(1 - 0.95**10)


def test_effective_bma_zeroes_low_values_only_after_warmup():
    assert scoring.effective_bma(0.05, 9, CFG) == 0.05  # warm-up: used as is
    assert scoring.effective_bma(0.05, 10, CFG) == 0.0  # after 10 evaluations: below 0.10 -> 0
    assert scoring.effective_bma(0.10, 10, CFG) == 0.10
    assert scoring.effective_bma(-0.3, 3, CFG) == -0.3  # clipping negatives is the final's job


def test_final_is_ordinal_times_clipped_bma_times_sync():
    rec = PeerRecord(mu=30.0, sigma=2.0, bma=0.4, eval_count=12, sync=0.5)
    assert scoring.final_score(rec, CFG) == pytest.approx((30.0 - 6.0) * 0.4 * 0.5)
    neg = PeerRecord(mu=30.0, sigma=2.0, bma=-0.4, eval_count=12, sync=1.0)
    assert scoring.final_score(neg, CFG) == 0.0
    low = PeerRecord(mu=30.0, sigma=2.0, bma=0.09, eval_count=10, sync=1.0)
    assert scoring.final_score(low, CFG) == 0.0
    assert scoring.combine_final(-2.0, 0.5, 1.0) == pytest.approx(-1.0)


def test_config_defaults_are_spec_numbers_and_bad_values_rejected():
    assert (CFG.bma_alpha, CFG.bma_warmup_evals, CFG.bma_min) == (0.05, 10, 0.10)
    assert (CFG.openskill_beta, CFG.openskill_tau, CFG.missing_score) == (7.0, 0.1, -99.0)
    assert (CFG.copy_halve_overlap, CFG.copy_reset_overlap, CFG.copy_ban_overlap) == (0.4, 0.5, 0.6)
    assert (CFG.top_tier_size, CFG.second_tier_size, CFG.burn_fraction) == (20, 10, 0.5)
    assert GauntletConfig.from_dict({"burn_fraction": 0.0}).burn_fraction == 0.0
    assert GauntletConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(ConfigError, match="unknown"):
        GauntletConfig.from_dict({"burn_fracton": 0.0})
    with pytest.raises(ConfigError, match="burn_fraction"):
        GauntletConfig(burn_fraction=1.5)
    with pytest.raises(ConfigError, match="halve <= reset <= ban"):
        GauntletConfig(copy_reset_overlap=0.7)
    with pytest.raises(ConfigError):
        GauntletConfig(sync_robust="mean")
    assert math.isclose(CFG.openskill_sigma * 3, CFG.openskill_mu)
