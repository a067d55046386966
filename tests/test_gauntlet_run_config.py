"""Every Gauntlet setting is a key of the run config's `validator` section (which IS a
GauntletConfig), and the validator scores with that section as is."""

import dataclasses

import pytest

from templar_jax.config import RunConfigError, load_run_config
from templar_jax.config.typed import describe
from templar_jax.config.run_config import RunConfig
from templar_jax.gauntlet import GauntletConfig
from templar_jax.neurons.common import gauntlet_config


def test_every_gauntlet_field_is_a_documented_validator_key():
    keys = {f.key: f for f in describe(RunConfig)}
    for field in dataclasses.fields(GauntletConfig):
        info = keys[f"validator.{field.name}"]
        assert info.doc, field.name  # documented (docs/run-config.md is generated from these)
    cfg = load_run_config("covenant-72b")
    assert gauntlet_config(cfg) is cfg.validator and isinstance(cfg.validator, GauntletConfig)
    assert (cfg.validator.eval_uids_per_window, cfg.validator.burn_fraction) == (20, 0.5)


def test_overrides_reach_the_validator_and_bad_values_name_the_key():
    cfg = load_run_config("demo", ["validator.copy_ban_windows=7", "validator.missing_slash_escalates=false",
                                   "validator.sync_robust=trimmed_mean", "validator.openskill_beta=5"])
    g = gauntlet_config(cfg)
    assert (g.copy_ban_windows, g.missing_slash_escalates, g.sync_robust, g.openskill_beta) == (7, False, "trimmed_mean", 5.0)
    with pytest.raises(RunConfigError, match="bma_alpha"):
        load_run_config("demo", ["validator.bma_alpha=2"])
    with pytest.raises(RunConfigError, match="validator.eval_uids"):
        load_run_config("demo", ["validator.eval_uids=3"])  # the old key is gone (eval_uids_per_window)
