"""The tensor-by-tensor mapping between our parameter layout and HF LlamaForCausalLM.

Pure: no I/O, no framework. Our layout (docs/interfaces.md) stacks every layer
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


class ConversionError(Exception):
    """A checkpoint/config cannot be converted (missing tensor, wrong shape, unsupported feature)."""


# (our flat name, HF name suffix after `model.layers.{i}.`, transpose?)
LAYER_TENSORS: tuple[tuple[str, str, bool], ...] = (
    ("layers/attn_norm/scale", "input_layernorm.weight", False),
    ("layers/attn/wq", "self_attn.q_proj.weight", True),
    ("layers/attn/wk", "self_attn.k_proj.weight", True),
    ("layers/attn/wv", "self_attn.v_proj.weight", True),
    ("layers/attn/wo", "self_attn.o_proj.weight", True),
    ("layers/mlp_norm/scale", "post_attention_layernorm.weight", False),
    ("layers/mlp/w_gate", "mlp.gate_proj.weight", True),
    ("layers/mlp/w_up", "mlp.up_proj.weight", True),
    ("layers/mlp/w_down", "mlp.down_proj.weight", True),
)
EMBED = ("embed/embedding", "model.embed_tokens.weight", False)
FINAL_NORM = ("final_norm/scale", "model.norm.weight", False)
LM_HEAD = ("lm_head/kernel", "lm_head.weight", True)


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


def our_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """Flat name -> shape of our params for a ModelConfig (pure arithmetic)."""
    L, D, F, V = cfg.n_layers, cfg.d_model, cfg.d_ff, cfg.vocab_size
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {
        "embed/embedding": (V, D),
        "layers/attn_norm/scale": (L, D),
        "layers/attn/wq": (L, D, hq),
        "layers/attn/wk": (L, D, hkv),
        "layers/attn/wv": (L, D, hkv),
        "layers/attn/wo": (L, hq, D),
        "layers/mlp_norm/scale": (L, D),
        "layers/mlp/w_gate": (L, D, F),
        "layers/mlp/w_up": (L, D, F),
        "layers/mlp/w_down": (L, F, D),
        "final_norm/scale": (D,),
    }
    if not cfg.tie_embeddings:
        shapes["lm_head/kernel"] = (D, V)
    return shapes


def _hf_shape(our_shape: tuple[int, ...], stacked: bool, transpose: bool) -> tuple[int, ...]:
    shape = our_shape[1:] if stacked else our_shape
    return tuple(reversed(shape)) if transpose else tuple(shape)


def hf_tensor_plan(cfg) -> list[TensorSpec]:
    """Every HF tensor of the model, in HF's usual order (embed, layer 0..L-1, norm, head)."""
    shapes = our_shapes(cfg)
    plan = [TensorSpec(EMBED[1], EMBED[0], None, False, shapes[EMBED[0]])]
    for i in range(cfg.n_layers):
        for ours, suffix, transpose in LAYER_TENSORS:
            plan.append(TensorSpec(f"model.layers.{i}.{suffix}", ours, i, transpose,
                                   _hf_shape(shapes[ours], True, transpose)))
    plan.append(TensorSpec(FINAL_NORM[1], FINAL_NORM[0], None, False, shapes[FINAL_NORM[0]]))
    if not cfg.tie_embeddings:
        plan.append(TensorSpec(LM_HEAD[1], LM_HEAD[0], None, True,
                               _hf_shape(shapes[LM_HEAD[0]], False, True)))
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
