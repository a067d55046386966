"""Validator publish and late-joiner bootstrap, on top of local + remote checkpoints.

    # validator, every N outer steps
    save_and_publish(ckpts, bucket, version=v, window=w, params=params, global_step=s, keep=3)
    # or save here and upload in the background (checkpoint/publisher.py)
    publisher.submit(w, save_checkpoint(ckpts, version=v, window=w, params=params, global_step=s), global_step=s)
    # late joiner / restarting miner
    restored = bootstrap_from_bucket(leader_bucket, v, cache_dir, target=abstract_target(...))
    result = catch_up(restored.params, restored.meta.window + 1, current_window, fetch, apply)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional

from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints, Restored
from templar_jax.checkpoint.remote import fetch_checkpoint, publish_checkpoint
from templar_jax.multihost.bucket import agreement_of

PyTree = Any


def save_checkpoint(ckpts: LocalCheckpoints, *, version: str, window: int, params: PyTree, global_step: int,
                    extra: Optional[Mapping[str, Any]] = None,
                    extras: Optional[Mapping[str, PyTree]] = None) -> Path:
    """Save `params` locally as step `window` and wait until it is complete; its folder (every
    process of a neuron spanning several saves its shards: a collective)."""
    meta = CheckpointMeta(window=window, global_step=global_step, version=version,
                          extra=dict(extra or {}))
    ckpts.save(window, params, meta=meta, extras=extras)
    ckpts.wait()
    return ckpts.step_dir(window)


def save_and_publish(ckpts: LocalCheckpoints, bucket, *, version: str, window: int,
                     params: PyTree, global_step: int,
                     extra: Optional[Mapping[str, Any]] = None,
                     extras: Optional[Mapping[str, PyTree]] = None,
                     keep: Optional[int] = None) -> dict[str, Any]:
    """Save `params` locally as step `window`, wait for it, upload it, then move the pointer.

    For a neuron spanning processes (`bucket` is a multihost.AgreedBucket) every process saves its
    shards into `ckpts` (a folder they all share); once all have finished, process 0 uploads."""
    save_checkpoint(ckpts, version=version, window=window, params=params, global_step=global_step,
                    extra=extra, extras=extras)
    return agreement_of(bucket).value("publish checkpoint", lambda: publish_checkpoint(
        bucket, version, window, ckpts.step_dir(window), info={"global_step": int(global_step)}, keep=keep))


def bootstrap_from_bucket(bucket, version: str, cache_dir: str | Path, *,
                          window: Optional[int] = None, target: PyTree | None = None,
                          extras_target: Optional[Mapping[str, PyTree | None]] = None) -> Restored:
    """Fetch the latest (or `window`) published checkpoint and restore it onto `target`'s layout.

    For a neuron spanning processes (`bucket` is a multihost.AgreedBucket) process 0 downloads
    into `cache_dir`, which must then be a filesystem every process reads, and all restore.
    """
    window = int(agreement_of(bucket).value(
        "fetch checkpoint", lambda: fetch_checkpoint(bucket, version, cache_dir, window=window)[0]))
    ckpts = LocalCheckpoints(cache_dir, max_to_keep=None)
    try:
        return ckpts.restore(window, target=target, extras_target=extras_target)
    finally:
        ckpts.close()
