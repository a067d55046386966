"""Import a Hugging Face LlamaForCausalLM directory into our layout / an orbax checkpoint.

Layer tensors are copied one at a time from the memory-mapped safetensors into
preallocated stacked [L, ...] arrays, so peak memory is one copy of our params
(the HF files stay file-backed pages). Every tensor the checkpoint holds must be
used: an unknown tensor means a feature we do not model, and dropping it
silently would give a different network.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from templar_jax.convert.hf_config import model_config_from_hf
from templar_jax.convert.mapping import LM_HEAD_HF_NAME, ConversionError, hf_tensor_plan, hf_to_ours
from templar_jax.convert.safetensors_io import HFWeights
from templar_jax.model.param_table import flat_param_shapes

log = logging.getLogger(__name__)

# Buffers some older exports carry; recomputed from config, never learned.
_IGNORABLE = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")
_PARAM_DTYPES = {"float32": np.dtype(np.float32), "bfloat16": np.dtype(ml_dtypes.bfloat16)}


def read_hf_config(hf_dir: str | Path) -> dict[str, Any]:
    path = Path(hf_dir) / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConversionError(f"{hf_dir}: no config.json") from err
    except json.JSONDecodeError as err:
        raise ConversionError(f"{path}: not JSON ({err})") from err
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: top level is not an object")
    return config


def load_hf_params(hf_dir: str | Path, *, param_dtype: str = "float32", progress=None,
                   **cfg_overrides: Any) -> tuple[Any, dict]:
    """(ModelConfig, nested params dict of numpy arrays) for an HF Llama directory.

    `cfg_overrides` go to the ModelConfig (e.g. dtype="float32" for fp32 compute).
    """
    from templar_jax.model.params import unflatten_params

    if param_dtype not in _PARAM_DTYPES:
        raise ConversionError(f"param_dtype {param_dtype!r} must be one of {sorted(_PARAM_DTYPES)}")
    np_dtype = _PARAM_DTYPES[param_dtype]
    cfg = model_config_from_hf(read_hf_config(hf_dir), param_dtype=param_dtype, **cfg_overrides)
    weights = HFWeights(hf_dir)
    plan = hf_tensor_plan(cfg)
    flat = {name: np.empty(shape, np_dtype) for name, shape in flat_param_shapes(cfg).items()}
    for i, spec in enumerate(plan):
        value = hf_to_ours(weights.get(spec.hf_name), spec)
        target = flat[spec.our_name]
        if spec.layer is None:
            target[...] = value
        else:
            target[spec.layer] = value
        if progress is not None:
            progress(i + 1, len(plan), spec.hf_name)
    used = {spec.hf_name for spec in plan}
    leftover = [n for n in weights.names() if n not in used and not _IGNORABLE.match(n)]
    if cfg.tie_embeddings and LM_HEAD_HF_NAME in leftover:
        # Tied models may still ship lm_head.weight; it must equal the embedding.
        if not np.array_equal(weights.get(LM_HEAD_HF_NAME), weights.get("model.embed_tokens.weight")):
            raise ConversionError("tie_word_embeddings is true but lm_head.weight differs "
                                  "from model.embed_tokens.weight")
        leftover.remove(LM_HEAD_HF_NAME)
    if leftover:
        raise ConversionError(f"{hf_dir}: tensors our model does not have: {sorted(leftover)[:5]}"
                              f"{' ...' if len(leftover) > 5 else ''}")
    return cfg, unflatten_params(flat)


def model_config_to_json(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def model_config_from_json(data: dict[str, Any]):
    from templar_jax.model.config import ModelConfig, ModelConfigError

    try:
        return ModelConfig(**data)
    except (TypeError, ModelConfigError) as err:
        raise ConversionError(f"stored model config is invalid: {err}") from err


def import_hf_checkpoint(hf_dir: str | Path, out_dir: str | Path, *, step: int = 0,
                         version: str = "hf-import", param_dtype: str = "float32",
                         progress=None) -> tuple[Any, Path]:
    """Convert `hf_dir` into a LocalCheckpoints directory at `out_dir` (step `step`).

    The ModelConfig is stored in the checkpoint meta (`extra["model_config"]`) so
    `convert to-hf` and the neurons can rebuild the model from the checkpoint alone.
    """
    from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints

    cfg, params = load_hf_params(hf_dir, param_dtype=param_dtype, progress=progress)
    meta = CheckpointMeta(window=step, global_step=0, version=version,
                          extra={"model_config": model_config_to_json(cfg),
                                 "source": f"huggingface:{Path(hf_dir).name}"})
    with LocalCheckpoints(out_dir, max_to_keep=None, async_save=False) as ckpts:
        ckpts.save(step, params, meta=meta)
        ckpts.wait()
        step_dir = ckpts.step_dir(step)
    log.info("imported %s -> %s (step %d)", hf_dir, step_dir, step)
    return cfg, step_dir
