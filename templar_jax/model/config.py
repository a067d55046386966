"""Model configuration: a frozen (hashable, jit-static) dataclass plus YAML presets.

Presets live in `templar_jax/configs/models/{name}.yaml` (package data). A preset file holds only
the shape keys; runtime knobs (dtype, scan, remat) take the dataclass defaults unless the
file or the caller overrides them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from templar_jax.package_data import MODEL_PRESETS_DIR

ATTENTION_IMPLS = ("xla", "cudnn", "auto")
REMAT_POLICIES = (
    "none",
    "full",
    "nothing_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "everything_saveable",
)
_DTYPES = ("float32", "bfloat16", "float16")


class ModelConfigError(ValueError):
    """A model config (preset file or override) is malformed or inconsistent."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    max_seq_len: int = 2048
    dtype: str = "bfloat16"  # compute dtype of activations and matmuls
    param_dtype: str = "float32"  # storage dtype of the parameters
    scan_layers: bool = True  # lax.scan over the stacked layers (one compiled layer body)
    remat_policy: str = "none"  # see REMAT_POLICIES
    # jax.nn.dot_product_attention backend: "xla" (any device), "cudnn" (NVIDIA, fused flash
    # attention, bf16/fp16 only), "auto" (cudnn on a GPU when the compute dtype allows, else
    # xla; cudnn measured faster on an H200, docs/results.md).
    attention_impl: str = "auto"

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ModelConfigError(f"{name} must be a positive int, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ModelConfigError(
                f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}"
            )
        if self.head_dim % 2:
            raise ModelConfigError(f"head_dim {self.head_dim} must be even for RoPE")
        if self.dtype not in _DTYPES or self.param_dtype not in _DTYPES:
            raise ModelConfigError(f"dtype/param_dtype must be one of {_DTYPES}")
        if self.remat_policy not in REMAT_POLICIES:
            raise ModelConfigError(
                f"unknown remat_policy {self.remat_policy!r}; choose from {REMAT_POLICIES}"
            )
        if self.attention_impl not in ATTENTION_IMPLS:
            raise ModelConfigError(
                f"unknown attention_impl {self.attention_impl!r}; choose from {ATTENTION_IMPLS}"
            )
        if not (self.rope_theta > 0 and self.norm_eps > 0):
            raise ModelConfigError("rope_theta and norm_eps must be positive")

    def replace(self, **overrides: Any) -> "ModelConfig":
        return dataclasses.replace(self, **overrides)


def presets_dir() -> Path:
    """The shipped presets (`templar_jax/configs/models`, installed with the package)."""
    return MODEL_PRESETS_DIR


def available_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_model_config(name_or_path: str | Path, **overrides: Any) -> ModelConfig:
    """Read a preset by name (`tiny`, `covenant-72b`, ...) or a YAML path; apply overrides.

    Overrides whose value is None are ignored, so CLI flags can be passed straight through.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = presets_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ModelConfigError(
            f"no model preset {str(name_or_path)!r} (looked for {path}); "
            f"available: {', '.join(available_presets())}"
        )
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{path}: top level must be a mapping")
    raw.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelConfigError(f"{path}: unknown keys {unknown}")
    for key in ("rope_theta", "norm_eps"):
        if key in raw:
            raw[key] = float(raw[key])
    try:
        return ModelConfig(**raw)
    except TypeError as exc:  # missing required shape keys
        raise ModelConfigError(f"{path}: {exc}") from exc
