"""Every Gauntlet constant in one place (defaults are the reference's production numbers, SPEC sec. 5).

Runs tune them by constructing `GauntletConfig(**overrides)`; `from_dict` rejects unknown keys so a
misspelt YAML key fails loudly instead of silently keeping the default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from templar_jax.gauntlet.errors import ConfigError


@dataclass(frozen=True)
class GauntletConfig:
    # --- evaluation-uid selection -------------------------------------------------------------
    eval_uids_per_window: int = 20
    # Sampling weight = 1 + min(windows since last evaluation, cap); never evaluated -> cap.
    eval_staleness_cap: int = 20
    selection_seed: int = 0

    # --- binary moving average (BMA) ----------------------------------------------------------
    bma_alpha: float = 0.05
    bma_warmup_evals: int = 10  # after this many evaluations of a uid ...
    bma_min: float = 0.10  # ... a BMA below this counts as 0

    # --- OpenSkill ----------------------------------------------------------------------------
    openskill_beta: float = 7.0
    openskill_tau: float = 0.1
    openskill_mu: float = 25.0
    openskill_sigma: float = 25.0 / 3.0
    ordinal_z: float = 3.0  # ordinal = mu - z * sigma
    missing_score: float = -99.0  # window score of a missing / invalid / late submission

    # --- sync score ---------------------------------------------------------------------------
    sync_max_steps: float = 3.0  # x is clipped to this; sync = max(0, 1 - x/3) ** exponent
    sync_exponent: float = 2.5
    sync_samples_per_tensor: int = 2
    sync_sample_seed: int = 0
    sync_ema_alpha: float = 0.2  # weight of the newest per-step change in its EMA
    sync_robust: str = "median"  # "median" or "trimmed_mean" over the sampled elements
    sync_trim_fraction: float = 0.1  # fraction cut from each end by "trimmed_mean"
    sync_ema_floor: float = 1e-12  # a parameter that never moved: avoid x = d / 0

    # --- copy detection -----------------------------------------------------------------------
    copy_halve_overlap: float = 0.4
    copy_reset_overlap: float = 0.5
    copy_ban_overlap: float = 0.6
    copy_ban_windows: int = 20
    copy_halve_factor: float = 0.5  # score multiplier of the "halve" penalty

    # --- slashing -----------------------------------------------------------------------------
    missing_slash: float = 0.75  # score multiplier for a missing/late payload
    zero_below: float = 1e-4  # a slashed score below this becomes 0
    inactivity_slash: float = 0.75  # multiplier per inactive window
    inactivity_reset_windows: int = 3  # this many consecutive inactive windows reset the uid
    poor_sync_steps: float = 2.0  # a gather peer with x above this is slashed
    poor_sync_slash: float = 0.75
    negative_evals_to_exclude: int = 3

    # --- weights and peer lists ---------------------------------------------------------------
    top_tier_size: int = 20
    top_tier_share: float = 0.75
    top_tier_ramp: float = 2.0  # best of the top tier gets this multiple of the tier's last
    second_tier_size: int = 10
    second_tier_share: float = 0.25
    second_tier_decay: float = 0.5
    burn_fraction: float = 0.5  # production; local runs use 0
    burn_uid: int = 1
    gather_peers: int = 20
    reserve_peers: int = 10

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "GauntletConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown gauntlet config keys: {', '.join(unknown)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check(cfg: GauntletConfig) -> None:
    """Reject values that would make a rule meaningless (a typo in a run config, usually)."""
    fractions = ("bma_alpha", "sync_ema_alpha", "burn_fraction", "top_tier_share",
                 "second_tier_share", "missing_slash", "copy_halve_factor", "inactivity_slash", "poor_sync_slash")
    for name in fractions:
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value} must lie in [0, 1]")
    if not 0.0 <= cfg.sync_trim_fraction < 0.5:
        raise ConfigError(f"sync_trim_fraction={cfg.sync_trim_fraction} must lie in [0, 0.5)")
    if cfg.sync_robust not in ("median", "trimmed_mean"):
        raise ConfigError(f"sync_robust={cfg.sync_robust!r} must be 'median' or 'trimmed_mean'")
    if not (cfg.copy_halve_overlap <= cfg.copy_reset_overlap <= cfg.copy_ban_overlap):
        raise ConfigError("copy thresholds must satisfy halve <= reset <= ban")
    counts = ("eval_uids_per_window", "top_tier_size", "second_tier_size", "gather_peers",
              "reserve_peers", "sync_samples_per_tensor", "inactivity_reset_windows",
              "negative_evals_to_exclude", "copy_ban_windows", "bma_warmup_evals",
              "eval_staleness_cap")
    for name in counts:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be >= 0")
    if cfg.sync_max_steps <= 0 or cfg.top_tier_ramp < 1.0 or not 0 < cfg.second_tier_decay <= 1:
        raise ConfigError("sync_max_steps > 0, top_tier_ramp >= 1, 0 < second_tier_decay <= 1")
