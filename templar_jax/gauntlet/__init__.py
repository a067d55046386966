"""Gauntlet: the validator's scoring rules (SPEC sec. 5) as pure functions over ValidatorState.

Modules: config (every constant), state (records + atomic JSON), scoring (LossScore, BMA, final),
openskill_rank (Plackett-Luce), sync (debug samples, steps behind), copy_detect (index overlap),
slashing, selection (evaluation uids, gather list), weights (chain weights), window (one window's
evaluations applied in order), eval_seed (the unpredictable per-window evaluation seed),
recycling (a new hotkey on a uid resets it), stale_copy (re-uploads of an earlier window's updates).
"""

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.copy_detect import (
    CopyVerdict,
    apply_copy_verdicts,
    chunk_overlap,
    detect_copies,
    payload_overlap,
)
from templar_jax.gauntlet.errors import ConfigError, GauntletError, ScoreInputError, StateError
from templar_jax.gauntlet.eval_seed import EvalDraw, draw, evaluation_seed, load_or_create_secret
from templar_jax.gauntlet.recycling import observe_hotkeys
from templar_jax.gauntlet.scoring import (
    binary_indicator,
    effective_bma,
    final_score,
    loss_score,
    relative_improvement,
    update_bma,
)
from templar_jax.gauntlet.selection import PeerList, select_eval_uids, select_gather_peers
from templar_jax.gauntlet.slashing import (
    apply_inactivity,
    missing_factor,
    slash_invalid,
    slash_missing,
    slash_poor_sync,
)
from templar_jax.gauntlet.stale_copy import AGGREGATE_SOURCE, EarlierUpdates, detect_stale_copies, remember
from templar_jax.gauntlet.state import PeerRecord, ValidatorState, load_or_init, load_state, save_state
from templar_jax.gauntlet.sync import (
    choose_sample_positions,
    debug_object,
    observe_validator_sample,
    parse_debug_object,
    sample_params,
    steps_behind,
    sync_score,
)
from templar_jax.gauntlet.weights import WeightVector, compute_weights
from templar_jax.gauntlet.window import Evaluation, score_window

__all__ = [
    "AGGREGATE_SOURCE", "EarlierUpdates", "detect_stale_copies", "remember",
    "ConfigError", "CopyVerdict", "EvalDraw", "Evaluation", "GauntletConfig", "GauntletError", "PeerList",
    "PeerRecord", "ScoreInputError", "StateError", "ValidatorState", "WeightVector",
    "apply_copy_verdicts", "apply_inactivity", "binary_indicator", "choose_sample_positions",
    "chunk_overlap", "compute_weights", "debug_object", "detect_copies", "draw", "effective_bma", "evaluation_seed",
    "final_score", "load_or_create_secret", "load_or_init", "load_state", "loss_score", "missing_factor",
    "observe_hotkeys", "observe_validator_sample",
    "parse_debug_object", "payload_overlap", "relative_improvement", "sample_params",
    "save_state", "score_window", "select_eval_uids", "select_gather_peers", "slash_invalid",
    "slash_missing", "slash_poor_sync", "steps_behind", "sync_score", "update_bma",
]
