"""Every Gauntlet constant in one place (defaults are the reference's production numbers, SPEC sec. 5).

Runs tune them in the run config's `validator` section (which IS a GauntletConfig, so every field
below is a run-config key) or by constructing `GauntletConfig(**overrides)`; `from_dict` rejects
unknown keys so a misspelt key fails loudly instead of silently keeping the default. How many
peers the leader gathers is the run config's `peers` section, passed to `select_gather_peers`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from templar_jax.gauntlet.errors import ConfigError


@dataclass(frozen=True)
class GauntletConfig:
    """The Gauntlet's rules (SPEC sec. 5); one line per key for the generated docs.

    eval_uids_per_window: uids evaluated per window (weighted random draw)
    eval_staleness_cap: draw weight = 1 + min(windows since the uid's last evaluation, this); never evaluated: the cap
    selection_seed: domain tag mixed into the evaluation draw (the draw's randomness is the window's eval seed)
    bma_alpha: weight of the newest own-vs-random indicator in the binary moving average
    bma_warmup_evals: after this many evaluations of a uid ...
    bma_min: ... a BMA below this counts as 0
    openskill_beta: Plackett-Luce beta
    openskill_tau: Plackett-Luce tau (added to sigma before each update)
    openskill_mu: rating mu of a new uid
    openskill_sigma: rating sigma of a new uid
    ordinal_z: ordinal = mu - z * sigma
    missing_score: OpenSkill score of a missing, late or invalid submission
    sync_max_steps: steps behind x is clipped to this; sync = max(0, 1 - x / this) ** sync_exponent
    sync_exponent: exponent of the sync score
    sync_samples_per_tensor: parameter values per tensor in the debug object
    sync_sample_seed: seed of the debug object's sampled positions (miners and validators share it)
    sync_ema_alpha: weight of the newest per-step change in its EMA
    sync_robust: 'median' or 'trimmed_mean' over the sampled elements
    sync_trim_fraction: fraction cut from each end by 'trimmed_mean'
    sync_ema_floor: EMA floor, so a parameter that never moved does not divide by 0
    copy_halve_overlap: index overlap at which the later uploader's score is halved
    copy_reset_overlap: overlap at which its record is reset
    copy_ban_overlap: overlap at which it is also banned
    copy_ban_windows: windows a copier stays banned
    copy_halve_factor: score multiplier of the 'halve' penalty
    stale_copy_chunks: chunks per tensor remembered from a scored window to catch later re-uploads of its updates (0: off)
    stale_copy_windows: scored windows whose updates are remembered for the stale-copy check
    missing_slash: score multiplier for a missing or late payload of an evaluated uid
    missing_slash_escalates: the k-th consecutive window without a payload multiplies by missing_slash ** k
    zero_below: a slashed score below this becomes 0
    inactivity_slash: score multiplier per window without a payload (uids not evaluated)
    inactivity_reset_windows: this many consecutive windows without a payload reset the uid's record
    poor_sync_steps: a gather peer more than this many steps behind is slashed
    poor_sync_slash: score multiplier of a poorly synced gather peer
    negative_evals_to_exclude: consecutive negative evaluations that exclude a uid from gather
    top_tier_size: peers sharing the top tier's weight
    top_tier_share: the top tier's share of the non-burned weight
    top_tier_ramp: the best of the top tier gets this multiple of the tier's last
    second_tier_size: peers sharing the second tier's weight
    second_tier_share: the second tier's share of the non-burned weight
    second_tier_decay: rank j of the second tier gets decay ** j
    burn_fraction: share of weight burned to burn_uid (production 0.5; local runs 0)
    burn_uid: uid receiving the burned share
    """

    # --- evaluation-uid selection -------------------------------------------------------------
    eval_uids_per_window: int = 20
    eval_staleness_cap: int = 20
    selection_seed: int = 0

    # --- binary moving average (BMA) ----------------------------------------------------------
    bma_alpha: float = 0.05
    bma_warmup_evals: int = 10
    bma_min: float = 0.10

    # --- OpenSkill ----------------------------------------------------------------------------
    openskill_beta: float = 7.0
    openskill_tau: float = 0.1
    openskill_mu: float = 25.0
    openskill_sigma: float = 25.0 / 3.0
    ordinal_z: float = 3.0
    missing_score: float = -99.0

    # --- sync score ---------------------------------------------------------------------------
    sync_max_steps: float = 3.0
    sync_exponent: float = 2.5
    sync_samples_per_tensor: int = 2
    sync_sample_seed: int = 0
    sync_ema_alpha: float = 0.2
    sync_robust: str = "median"
    sync_trim_fraction: float = 0.1
    sync_ema_floor: float = 1e-12

    # --- copy detection -----------------------------------------------------------------------
    copy_halve_overlap: float = 0.4
    copy_reset_overlap: float = 0.5
    copy_ban_overlap: float = 0.6
    copy_ban_windows: int = 20
    copy_halve_factor: float = 0.5
    stale_copy_chunks: int = 64  # not in the reference: replays and free riders (stale_copy.py)
    stale_copy_windows: int = 2

    # --- slashing -----------------------------------------------------------------------------
    missing_slash: float = 0.75
    missing_slash_escalates: bool = True
    zero_below: float = 1e-4
    inactivity_slash: float = 0.75
    inactivity_reset_windows: int = 3
    poor_sync_steps: float = 2.0
    poor_sync_slash: float = 0.75
    negative_evals_to_exclude: int = 3

    # --- weights ------------------------------------------------------------------------------
    top_tier_size: int = 20
    top_tier_share: float = 0.75
    top_tier_ramp: float = 2.0
    second_tier_size: int = 10
    second_tier_share: float = 0.25
    second_tier_decay: float = 0.5
    burn_fraction: float = 0.5
    burn_uid: int = 1

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
    counts = ("eval_uids_per_window", "top_tier_size", "second_tier_size", "sync_samples_per_tensor", "inactivity_reset_windows",
              "negative_evals_to_exclude", "copy_ban_windows", "bma_warmup_evals", "stale_copy_chunks", "stale_copy_windows",
              "eval_staleness_cap")
    for name in counts:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be >= 0")
    if cfg.sync_max_steps <= 0 or cfg.top_tier_ramp < 1.0 or not 0 < cfg.second_tier_decay <= 1:
        raise ConfigError("sync_max_steps > 0, top_tier_ramp >= 1, 0 < second_tier_decay <= 1")
