"""Typed errors of the Gauntlet wing; each carries the reason as its message."""

from __future__ import annotations


class GauntletError(Exception):
    """Base of every error raised by templar_jax.gauntlet."""


class ConfigError(GauntletError, ValueError):
    """A GauntletConfig value or key is invalid."""


class ScoreInputError(GauntletError, ValueError):
    """A score input is unusable (non-finite loss, non-positive baseline, shape mismatch)."""


class StateError(GauntletError):
    """A persisted ValidatorState file is missing, corrupt, or of an unknown version."""
