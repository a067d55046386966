"""Miner resume: everything a peer needs to pick up where it stopped.

A miner's state between windows is more than the global params: the inner
optimizer state persists across windows (SPEC sec. 2), the error-feedback
buffers carry what earlier payloads did not send, and the schedule step drives
the warmup/cosine learning rate. Losing any of them changes what the miner
sends next, so all of it is saved together, in one step directory.

Generic over pytrees: the optimizer state is whatever optax returns (restored
through a template so NamedTuples come back as NamedTuples) and the error
feedback is any tree (usually a dict of arrays keyed like the params).
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Optional

from templar_jax.checkpoint.local import (
    CheckpointError,
    CheckpointMeta,
    LocalCheckpoints,
    abstract_target,
)

PyTree = Any

OPT_STATE = "opt_state"
ERROR_FEEDBACK = "error_feedback"


class TrainingState(NamedTuple):
    """A miner's resumable state after finishing `window`."""

    params: PyTree
    opt_state: PyTree
    error_feedback: PyTree
    window: int
    schedule_step: int


def save_training_state(ckpts: LocalCheckpoints, state: TrainingState, *, version: str,
                        extra: Optional[Mapping[str, Any]] = None, wait: bool = False) -> None:
    """Save `state` as step `state.window` (async unless `wait`)."""
    meta = CheckpointMeta(window=state.window, global_step=state.schedule_step,
                          version=version, extra=dict(extra or {}))
    ckpts.save(state.window, state.params, meta=meta,
               extras={OPT_STATE: state.opt_state, ERROR_FEEDBACK: state.error_feedback})
    if wait:
        ckpts.wait()


def restore_training_state(ckpts: LocalCheckpoints, *, params_like: PyTree, opt_state_like: PyTree,
                           error_feedback_like: PyTree, step: Optional[int] = None,
                           expect_version: Optional[str] = None) -> TrainingState:
    """Restore the latest (or `step`) miner state onto the layouts of the `*_like` trees.

    Each `*_like` is a tree of arrays or ShapeDtypeStructs (e.g. from
    `jax.eval_shape(optimizer.init, params)`) whose shardings say where to put
    the restored arrays. With `expect_version`, a checkpoint from another run
    version raises `CheckpointError` instead of silently resuming the wrong run.
    """
    restored = ckpts.restore(
        step,
        target=abstract_target(params_like),
        extras_target={OPT_STATE: abstract_target(opt_state_like),
                       ERROR_FEEDBACK: abstract_target(error_feedback_like)},
    )
    if expect_version is not None and restored.meta.version != expect_version:
        raise CheckpointError(
            f"checkpoint step {restored.step} is run version {restored.meta.version!r}, "
            f"expected {expect_version!r}"
        )
    return TrainingState(
        params=restored.params,
        opt_state=restored.extras[OPT_STATE],
        error_feedback=restored.extras[ERROR_FEEDBACK],
        window=restored.meta.window,
        schedule_step=restored.meta.global_step,
    )
