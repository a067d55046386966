"""Typed errors of `templar_jax.evaluate` (each message names the reason and the path)."""

from __future__ import annotations


class EvalError(Exception):
    """A checkpoint, run folder or data set cannot be evaluated (reason in the message)."""


class RunReplayError(EvalError):
    """A demo run's final model cannot be rebuilt from its validator bucket."""


class LmEvalUnavailable(EvalError):
    """lm-eval tasks were asked for, but `lm_eval` (or transformers/torch) is not importable."""
