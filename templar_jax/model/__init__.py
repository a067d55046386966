"""templar_jax.model: LLaMA-3-style decoder (Flax NNX) behind a plain-dict functional API."""

from templar_jax.model.api import (
    abstract_params,
    apply,
    embedding_param_count,
    init_params,
    param_count,
    param_logical_axes,
    param_shapes,
)
from templar_jax.model.config import (
    REMAT_POLICIES,
    ModelConfig,
    ModelConfigError,
    available_presets,
    load_model_config,
)
from templar_jax.model.params import ParamTreeError, flatten_params, unflatten_params

__all__ = [
    "REMAT_POLICIES",
    "ModelConfig",
    "ModelConfigError",
    "ParamTreeError",
    "abstract_params",
    "apply",
    "available_presets",
    "embedding_param_count",
    "flatten_params",
    "init_params",
    "load_model_config",
    "param_count",
    "param_logical_axes",
    "param_shapes",
    "unflatten_params",
]
