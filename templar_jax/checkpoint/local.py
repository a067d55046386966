"""Local orbax checkpoints of the global model plus optional extra pytrees.

One step directory per checkpoint (the step is the caller's choice; neurons use
the window number). Items inside a step:

    params/            the parameter tree (orbax StandardSave, OCDBT)
    meta/              JSON: window, global_step, run version, extra names, free-form extra
    extra_<name>/      any further pytree (inner optimizer state, error feedback, ...)

Saves are async by default: `save` returns once the arrays are copied off the
device and the write continues in a background thread; orbax writes into a
temporary directory and renames it only when complete, so a crash mid-save
leaves the previous step as `latest_step()`.

Restores take an optional *target*: a pytree of arrays or `jax.ShapeDtypeStruct`
whose `.sharding` says where each restored array must live. That is how a
checkpoint saved on an 8-device mesh is loaded onto 4 devices or 1 device.
Without a target, arrays are restored onto one device (the default device),
which works whatever layout the checkpoint was saved from.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp

PyTree = Any

log = logging.getLogger(__name__)

PARAMS_ITEM = "params"
META_ITEM = "meta"
EXTRA_PREFIX = "extra_"
_EXTRA_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")


class CheckpointError(Exception):
    """A checkpoint is missing, incomplete, or does not match what was asked for."""


@dataclasses.dataclass(frozen=True)
class CheckpointMeta:
    """Step metadata saved beside the params (JSON)."""

    window: int
    global_step: int
    version: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self, extra_items: list[str]) -> dict:
        return {
            "window": int(self.window),
            "global_step": int(self.global_step),
            "version": str(self.version),
            "extra": dict(self.extra),
            "extra_items": sorted(extra_items),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "CheckpointMeta":
        try:
            return cls(
                window=int(data["window"]),
                global_step=int(data["global_step"]),
                version=str(data["version"]),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint meta is malformed: {err!r}") from err


class Restored(NamedTuple):
    """What `LocalCheckpoints.restore` returns."""

    step: int
    params: PyTree
    meta: CheckpointMeta
    extras: dict[str, PyTree]


def abstract_target(tree: PyTree, shardings: PyTree | None = None) -> PyTree:
    """ShapeDtypeStruct tree for restoring `tree`'s shapes/dtypes onto `shardings`.

    `tree` may hold arrays or ShapeDtypeStructs (e.g. `jax.eval_shape(init_fn)`);
    `shardings` is a matching tree of `jax.sharding.Sharding` (or one sharding
    for every leaf). None keeps each leaf's own `.sharding`.
    """
    if shardings is None:
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
            tree,
        )
    if isinstance(shardings, jax.sharding.Sharding):
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings), tree
        )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def _single_device_target(metadata_tree: PyTree) -> PyTree:
    """Target that puts every saved array on this process's first device, whatever it was saved
    from (jax.devices()[0] belongs to process 0 when several processes share a mesh)."""
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
        metadata_tree,
    )


# Stacked layer tensors are stored one chunk per layer (per device shard), so a reader that
# wants layer i (the HF exporter, a layer-streaming restore) reads only that layer's bytes.
# Orbax's default chunk is the whole device shard, which spans every layer: reading one
# layer would then decompress all of them (L-fold read amplification at export).
_MIN_LAYER_CHUNK_BYTES = 1 << 20  # below this, per-layer chunks cost more than they save


def layer_chunked_save_args(tree: PyTree) -> PyTree:
    """orbax SaveArgs per leaf: per-layer chunks for >= 2-D leaves under a "layers" key."""

    def one(path, leaf):
        keys = {getattr(k, "key", None) for k in path}
        shape = tuple(getattr(leaf, "shape", ()))
        if "layers" not in keys or len(shape) < 2 or shape[0] < 2:
            return ocp.SaveArgs()
        sharding = getattr(leaf, "sharding", None)
        shard = tuple(sharding.shard_shape(shape)) if hasattr(sharding, "shard_shape") else shape
        per_layer = math.prod(shard[1:]) * leaf.dtype.itemsize
        if shard[0] != shape[0] or per_layer < _MIN_LAYER_CHUNK_BYTES:
            return ocp.SaveArgs()  # layers axis itself sharded, or too small to matter
        return ocp.SaveArgs(chunk_byte_size=per_layer, shard_axes=(0,))

    return jax.tree_util.tree_map_with_path(one, tree)


def _check_extra_name(name: str) -> str:
    if not _EXTRA_NAME_RE.match(name):
        raise CheckpointError(f"extra item name {name!r} must match {_EXTRA_NAME_RE.pattern}")
    return EXTRA_PREFIX + name


class LocalCheckpoints:
    """A directory of step checkpoints with keep-last-N and async saves.

    >>> ckpts = LocalCheckpoints("/tmp/run/ckpt", max_to_keep=3)
    >>> ckpts.save(12, params, meta=CheckpointMeta(window=12, global_step=360, version="1"),
    ...            extras={"opt_state": opt_state})
    >>> ckpts.wait()
    >>> r = ckpts.restore(target=abstract_target(params), extras_target={"opt_state": opt_state})
    """

    def __init__(self, directory: str | Path, *, max_to_keep: Optional[int] = 3,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                enable_async_checkpointing=async_save,
                create=True,
                cleanup_tmp_directories=True,
            ),
        )

    # -- saving -----------------------------------------------------------------------
    def save(self, step: int, params: PyTree, *, meta: CheckpointMeta,
             extras: Optional[Mapping[str, PyTree]] = None, force: bool = True) -> bool:
        """Start saving `params` (+ extras) as `step`. Returns False if orbax declined.

        A save of a step that already exists raises CheckpointError (orbax would
        otherwise refuse silently or clobber); call `wait()` before reading the files.
        """
        if step in self.all_steps():
            raise CheckpointError(f"step {step} already exists in {self.directory}")
        extras = dict(extras or {})
        items: dict[str, ocp.args.CheckpointArgs] = {
            PARAMS_ITEM: ocp.args.StandardSave(params, save_args=layer_chunked_save_args(params)),
            META_ITEM: ocp.args.JsonSave(meta.to_json(list(extras))),
        }
        for name, tree in extras.items():
            items[_check_extra_name(name)] = ocp.args.StandardSave(
                tree, save_args=layer_chunked_save_args(tree))
        saved = self._manager.save(step, args=ocp.args.Composite(**items), force=force)
        log.info("checkpoint step %d: save %s (window %d, global_step %d)", step,
                 "started" if saved else "skipped", meta.window, meta.global_step)
        return bool(saved)

    def wait(self) -> None:
        """Block until every pending async save is on disk."""
        self._manager.wait_until_finished()

    # -- listing ----------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        """Finished steps, oldest first (call `reload()` first to see other processes' saves)."""
        return sorted(int(s) for s in self._manager.all_steps())

    def reload(self) -> None:
        """Re-read the directory (another process may have saved or pruned)."""
        self._manager.reload()

    def latest_step(self) -> Optional[int]:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def step_dir(self, step: int) -> Path:
        path = self.directory / str(step)
        if not path.is_dir():
            raise CheckpointError(f"no checkpoint step {step} in {self.directory}")
        return path

    # -- restoring --------------------------------------------------------------------
    def read_meta(self, step: Optional[int] = None) -> tuple[int, CheckpointMeta, list[str]]:
        """(step, meta, extra item names) of `step` (default: the latest)."""
        step = self._resolve_step(step)
        raw = self._manager.restore(step, args=ocp.args.Composite(
            **{META_ITEM: ocp.args.JsonRestore()}))[META_ITEM]
        return step, CheckpointMeta.from_json(raw), list(raw.get("extra_items", []))

    def restore(self, step: Optional[int] = None, *, target: PyTree | None = None,
                extras_target: Optional[Mapping[str, PyTree | None]] = None) -> Restored:
        """Restore `step` (default: latest).

        target: tree of arrays / ShapeDtypeStructs with shardings (see
        `abstract_target`); None restores onto the default device.
        extras_target: which extra items to restore, each with its own target
        (None for "as saved, on the default device"; optax NamedTuple states need a
        real target to come back as NamedTuples). Default: no extras.
        """
        step, meta, extra_names = self.read_meta(step)
        step_dir = self.step_dir(step)
        wanted = dict(extras_target or {})
        missing = sorted(set(wanted) - set(extra_names))
        if missing:
            raise CheckpointError(f"step {step} has no extra items {missing}; it has {extra_names}")
        items: dict[str, ocp.args.CheckpointArgs] = {
            PARAMS_ITEM: ocp.args.StandardRestore(
                self._target_or_default(step_dir / PARAMS_ITEM, target)),
        }
        for name, tgt in wanted.items():
            key = _check_extra_name(name)
            items[key] = ocp.args.StandardRestore(self._target_or_default(step_dir / key, tgt))
        out = self._manager.restore(step, args=ocp.args.Composite(**items))
        extras = {name: out[_check_extra_name(name)] for name in wanted}
        log.info("restored checkpoint step %d (window %d) from %s", step, meta.window, self.directory)
        return Restored(step, out[PARAMS_ITEM], meta, extras)

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "LocalCheckpoints":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ----------------------------------------------------------------------
    def _resolve_step(self, step: Optional[int]) -> int:
        if step is None:
            step = self.latest_step()
            if step is None:
                raise CheckpointError(f"no finished checkpoint in {self.directory}")
        elif step not in self.all_steps():
            raise CheckpointError(f"no finished checkpoint step {step} in {self.directory}")
        return int(step)

    @staticmethod
    def _target_or_default(item_dir: Path, target: PyTree | None) -> PyTree:
        if target is not None:
            return abstract_target(target)
        metadata = ocp.StandardCheckpointHandler().metadata(item_dir)
        tree = getattr(metadata, "tree", metadata)
        return _single_device_target(tree)
