"""templar_jax.model: LLaMA-3-style decoder (Flax NNX) behind a plain-dict functional API."""

from templar_jax.model.api import abstract_params, apply, init_params
from templar_jax.model.config import (
    REMAT_POLICIES,
    ModelConfig,
    ModelConfigError,
    available_presets,
    load_model_config,
)
from templar_jax.model.param_table import (
    ParamSpec,
    embedding_param_count,
    flat_param_shapes,
    layer_param_count,
    param_batch_dims,
    param_count,
    param_logical_axes,
    param_shapes,
    param_table,
)
from templar_jax.model.params import ParamTreeError, flatten_params, unflatten_params

__all__ = [
    "REMAT_POLICIES",
    "ModelConfig",
    "ModelConfigError",
    "ParamSpec",
    "ParamTreeError",
    "abstract_params",
    "apply",
    "available_presets",
    "embedding_param_count",
    "flat_param_shapes",
    "flatten_params",
    "init_params",
    "layer_param_count",
    "load_model_config",
    "param_batch_dims",
    "param_count",
    "param_logical_axes",
    "param_shapes",
    "param_table",
    "unflatten_params",
]
