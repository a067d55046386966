"""The tensor-by-tensor mapping between our parameter layout and HF LlamaForCausalLM.

Pure: no I/O, no framework; names, shapes and which tensors are stacked come from the model's
parameter table. Our layout (docs/interfaces.md) stacks every layer
tensor on a leading `layers` axis and stores linear kernels as [in, out]
(`x @ W`); Hugging Face keeps one tensor per layer and `nn.Linear` weights as
[out, in]. So layer i of a stacked kernel maps to `model.layers.{i}.*` by a
transpose. Our RoPE is HF's rotate_half convention, so q/k need no permutation.
RMSNorm scales multiply directly in both (no Gemma-style `1 + scale`).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from templar_jax.model.param_table import ParamSpec, param_table


class ConversionError(Exception):
    """A checkpoint/config cannot be converted (missing tensor, wrong shape, unsupported feature)."""


# our flat name -> (HF name, transpose?). Stacked (per-layer) parameters name the suffix after
# `model.layers.{i}.`; which ones are stacked, and every shape, comes from the model's
# parameter table (templar_jax/model/param_table.py).
HF_NAMES: dict[str, tuple[str, bool]] = {
    "embed/embedding": ("model.embed_tokens.weight", False),
    "layers/attn_norm/scale": ("input_layernorm.weight", False),
    "layers/attn/wq": ("self_attn.q_proj.weight", True),
    "layers/attn/wk": ("self_attn.k_proj.weight", True),
    "layers/attn/wv": ("self_attn.v_proj.weight", True),
    "layers/attn/wo": ("self_attn.o_proj.weight", True),
    "layers/mlp_norm/scale": ("post_attention_layernorm.weight", False),
    "layers/mlp/w_gate": ("mlp.gate_proj.weight", True),
    "layers/mlp/w_up": ("mlp.up_proj.weight", True),
    "layers/mlp/w_down": ("mlp.down_proj.weight", True),
    "final_norm/scale": ("model.norm.weight", False),
    "lm_head/kernel": ("lm_head.weight", True),
}
LM_HEAD_HF_NAME = HF_NAMES["lm_head/kernel"][0]


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One HF tensor: where it comes from in our layout and its HF shape."""

    hf_name: str
    our_name: str
    layer: Optional[int]  # index into our stacked [L, ...] tensor; None for unstacked
    transpose: bool
    hf_shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return int(np.prod(self.hf_shape, dtype=np.int64))


def _hf_shape(spec: ParamSpec, transpose: bool) -> tuple[int, ...]:
    shape = spec.layer_shape
    return tuple(reversed(shape)) if transpose else tuple(shape)


def hf_tensor_plan(cfg) -> list[TensorSpec]:
    """Every HF tensor of the model, in HF's usual order (embed, layer 0..L-1, norm, head)."""
    table = param_table(cfg)
    unknown = sorted(set(table) - set(HF_NAMES))
    if unknown:
        raise ConversionError(f"parameters with no Hugging Face name: {unknown}")
    names = list(table)  # creation order: embed, the stacked layer tensors, final norm, head
    first_layer = next(i for i, name in enumerate(names) if table[name].stacked)

    def top(name: str) -> TensorSpec:
        hf_name, transpose = HF_NAMES[name]
        return TensorSpec(hf_name, name, None, transpose, _hf_shape(table[name], transpose))

    plan = [top(name) for name in names[:first_layer]]
    for i in range(cfg.n_layers):
        for name in names:
            if table[name].stacked:
                suffix, transpose = HF_NAMES[name]
                plan.append(TensorSpec(f"model.layers.{i}.{suffix}", name, i, transpose,
                                       _hf_shape(table[name], transpose)))
    plan += [top(name) for name in names[first_layer:] if not table[name].stacked]
    return plan


def ours_to_hf(value: np.ndarray, spec: TensorSpec, dtype=None) -> np.ndarray:
    """Our (already layer-sliced) tensor -> the HF tensor of `spec`, C-contiguous, in `dtype`.

    Transpose and cast happen in one copy (a 72B embedding is 8.6 GB in fp32).
    """
    out = value.T if spec.transpose else value
    if tuple(out.shape) != spec.hf_shape:
        raise ConversionError(
            f"{spec.our_name}[{spec.layer}] has shape {tuple(value.shape)}; "
            f"{spec.hf_name} needs {spec.hf_shape}"
        )
    return np.asarray(out, dtype=dtype or out.dtype, order="C")


def hf_to_ours(value: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """An HF tensor -> our layout for `spec` (one layer slice for stacked tensors)."""
    if tuple(value.shape) != spec.hf_shape:
        raise ConversionError(
            f"{spec.hf_name} has shape {tuple(value.shape)}, expected {spec.hf_shape} from config.json"
        )
    return value.T if spec.transpose else value
