"""Load what `templar-jax eval` evaluates: params + model config from a checkpoint or a run.

CKPT may be
* a `LocalCheckpoints` directory (latest step, or `step=`),
* one step directory inside it (`.../12`, holding `params/` and `meta/`),
* a demo run folder (`runs/<id>`): its final model is rebuilt with `from_run` first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from templar_jax.evaluate.errors import EvalError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    params: dict
    model_cfg: object  # templar_jax.model.ModelConfig
    checkpoint_dir: Path  # the LocalCheckpoints root
    step: int
    meta: object  # templar_jax.checkpoint.CheckpointMeta

    @property
    def seq_len(self) -> Optional[int]:
        """The sequence length the model was trained on, when the checkpoint records it."""
        value = self.meta.extra.get("seq_len")
        return int(value) if value is not None else None


def _split_step_dir(path: Path, step: Optional[int]) -> tuple[Path, Optional[int]]:
    """A step directory `root/N` -> (root, N); a root stays as it is."""
    if (path / "params").is_dir() and path.name.isdigit():
        if step is not None and step != int(path.name):
            raise EvalError(f"{path} is step {path.name}, but step {step} was asked for")
        return path.parent, int(path.name)
    return path, step


def resolve_model_config(meta, model):
    """`model` (a ModelConfig, or a preset name or YAML) when given, else the config stored in
    the checkpoint meta."""
    from templar_jax.convert.from_hf import model_config_from_json
    from templar_jax.convert.mapping import ConversionError
    from templar_jax.model import ModelConfig, ModelConfigError, load_model_config

    if isinstance(model, ModelConfig):
        return model
    try:
        if model:
            return load_model_config(model)
        stored = meta.extra.get("model_config")
        if stored is None:
            raise EvalError("the checkpoint stores no model config; pass --model")
        return model_config_from_json(stored)
    except (ModelConfigError, ConversionError, FileNotFoundError) as err:
        raise EvalError(f"model config: {err}") from None


def sharded_target(cfg, mesh):
    """ShapeDtypeStructs of `cfg`'s params in their `mesh` shardings (nothing allocated): a
    restore target that reads each device's slices straight onto it."""
    import jax

    from templar_jax.checkpoint.local import abstract_target
    from templar_jax.model import init_params
    from templar_jax.model.sharding import param_shardings

    shapes = jax.eval_shape(lambda key: init_params(cfg, key), jax.random.key(0))
    return abstract_target(shapes, param_shardings(cfg, mesh))


def load_checkpoint(path: str | Path, *, step: Optional[int] = None, model=None, mesh=None) -> LoadedModel:
    """Params + model config of an orbax checkpoint; `model`: a ModelConfig, preset name or YAML
    path (default: the config stored in the checkpoint). With a `mesh` (and a `model`) the params
    are restored sharded over it by the model's sharding rules; else onto the default device."""
    from templar_jax.checkpoint.local import CheckpointError, LocalCheckpoints
    from templar_jax.model import param_shapes
    from templar_jax.model.params import flatten_params

    path = Path(path)
    if not path.is_dir():
        raise EvalError(f"checkpoint {path} does not exist")
    root, step = _split_step_dir(path.absolute(), step)
    if not any(p.is_dir() and p.name.isdigit() for p in root.iterdir()):
        raise EvalError(f"{path}: not a checkpoint directory (no step folders with params/)")
    if mesh is not None and model is None:
        raise EvalError("restoring onto a mesh needs the model config (model=)")
    target = sharded_target(resolve_model_config(None, model), mesh) if mesh is not None else None
    try:
        with LocalCheckpoints(root, max_to_keep=None, async_save=False) as ckpts:
            restored = ckpts.restore(step, target=target)
    except CheckpointError as err:
        raise EvalError(str(err)) from None
    except ValueError as err:  # orbax: the saved arrays do not fit the target's shapes
        raise EvalError(f"{path}: params do not fit the model config ({err})") from None
    cfg = resolve_model_config(restored.meta, model)
    want = {k: tuple(v) for k, v in flatten_params(param_shapes(cfg)).items()}
    got = {k: tuple(v.shape) for k, v in flatten_params(restored.params).items()}
    if want != got:
        diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise EvalError(f"{path}: params do not fit the model config at {diff[:3]} "
                        f"(checkpoint {[got.get(k) for k in diff[:3]]}, config {[want.get(k) for k in diff[:3]]})")
    return LoadedModel(restored.params, cfg, root, restored.step, restored.meta)


def load_for_eval(ckpt: str | Path, *, step: Optional[int] = None, model: Optional[str] = None,
                  run_config: Optional[str] = None, overrides: Optional[Iterable[str]] = None,
                  strict_digest: bool = True) -> LoadedModel:
    """A checkpoint, or a demo run folder (rebuilt and saved as `<run>/final_checkpoint` first)."""
    from templar_jax.evaluate.from_run import from_run, is_run_dir

    if is_run_dir(ckpt):
        built = from_run(ckpt, config=run_config, overrides=overrides, strict_digest=strict_digest)
        log.info("run %s: final model of window %d in %s", ckpt, built.step, built.checkpoint_dir)
        return load_checkpoint(built.checkpoint_dir, step=built.step, model=model)
    return load_checkpoint(ckpt, step=step, model=model)
