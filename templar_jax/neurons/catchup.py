"""Rebuilding the global model for a late joiner or a restarted neuron: the leader's latest
published checkpoint (if any) and then its published aggregates, replayed window by window, so
the result is bit-identical to the params of the neurons that were there all along."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, NamedTuple

import jax

from templar_jax.checkpoint import abstract_target, bootstrap_from_bucket, catch_up, read_latest
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.keys import aggregator_key

log = logging.getLogger(__name__)


class Rebuilt(NamedTuple):
    params: dict
    checkpoint_window: int | None  # the checkpoint restored, None when started from init
    applied: list[int]
    skipped: list[int]


def latest_checkpoint_window(leader: Bucket, version: str) -> int | None:
    try:
        pointer = read_latest(leader, version)
    except Exception as err:  # a bad pointer means: no usable checkpoint
        log.warning("leader checkpoint pointer unusable (%s)", err)
        return None
    return None if pointer is None else int(pointer["window"])


def replay_windows(model: GlobalModel, leader: Bucket, params: dict, first: int, upto: int,
                   fallback: Callable[[int], list] | None = None):
    """Apply the published aggregates of windows [first, upto). Where the leader has not
    published one (yet), `fallback(window)` may gather the same payloads from the peers'
    buckets; a window with neither is skipped and counted."""
    version = model.version

    def fetch(window: int):
        try:
            data = leader.get(aggregator_key(window, version))
            return model.aggregator_payloads(window, data)
        except Exception as err:
            if fallback is None:
                log.warning("window %d: no usable aggregate to replay (%s)", window, err)
                return None
        log.info("window %d: leader aggregate not available; gathering the peers' payloads", window)
        return fallback(window)

    return catch_up(params, first, upto, fetch, model.outer_step)


def rebuild_params(model: GlobalModel, leader: Bucket, *, start: int, upto: int,
                   cache_dir: str | Path, base: tuple[dict, int] | None = None,
                   fallback: Callable[[int], list] | None = None) -> Rebuilt:
    """Params at the beginning of window `upto`.

    `base` = (params, window) already holding every update up to `window` (e.g. a local resume
    checkpoint); otherwise the leader's latest checkpoint taken before `upto`, otherwise the
    run's initial params (nothing applied before `start`).
    """
    ckpt_window = None
    if base is not None:
        params, done = base
    else:
        params, done = None, start - 1
        window = latest_checkpoint_window(leader, model.version)
        if window is not None and done < window < upto:
            target = None if model.shardings is None else abstract_target(jax.eval_shape(model.init_params),
                                                                          model.shardings)  # born sharded
            restored = bootstrap_from_bucket(leader, model.version, cache_dir, window=window, target=target)
            params, done, ckpt_window = restored.params, restored.meta.window, restored.meta.window
        if params is None:
            params = model.init_params()
    if done + 1 >= upto:
        return Rebuilt(params, ckpt_window, [], [])
    result = replay_windows(model, leader, params, done + 1, upto, fallback)
    return Rebuilt(result.params, ckpt_window, result.applied, result.skipped)
