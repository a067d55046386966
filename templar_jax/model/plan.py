"""Memory plan per device, by shape arithmetic over the sharded shapes (no allocation).

Per device, for a SparseLoCo miner:
  params        fp32, sharded by the logical-axis rules
  grads         fp32, same sharding (the accumulated gradient)
  adamw         2 x fp32 (mu, nu), same sharding
  error_fb      fp32 SparseLoCo error feedback, same sharding
  theta0        fp32 copy of the global params at window start, same sharding
  gathered      bf16 weights that FSDP all-gathers at use: the larger of two layers' weights
                (the one computing + the next one prefetched) and the embedding table (the
                forward gathers the whole table for the lookup); split only over `tensor`
  activations   see `activation_bytes`

Activation estimate (bf16 = 2 bytes per element; t = micro_batch * seq_len tokens on one device,
T = tensor-parallel size, D/F = model/ffn width, Hq = n_heads*head_dim, Hkv = n_kv_heads*head_dim):
  saved per layer and token (what the backward pass keeps):
    none / everything_saveable: 6D + (2Hq + 2Hkv + 3F)/T   (norm in/out, q, k, v, attention
                                 out, projections, residuals, gate, up, silu*up)
    dots_saveable (and _no_batch_dims): 3D + (2Hq + 2Hkv + 2F)/T  (matmul outputs + layer input)
    full / nothing_saveable:     D                          (only the scanned layer input)
  total = n_layers * t * saved * 2
        + 2 * t * (6D + (2Hq + 2Hkv + 3F)/T) * 2    (one layer's activations and their grads
                                                   while it is recomputed / back-propagated)
        + 2 * t * V/T * 4                            (fp32 logits and their gradient)
Attention is assumed fused (cuDNN flash attention on GPU): no L x L score matrix is kept.
Without it (XLA fallback) add n_heads/T * seq_len^2 * micro_batch * 4 bytes per layer kept.
"""

from __future__ import annotations

import math

from templar_jax.model.api import param_count, param_logical_axes, param_shapes
from templar_jax.model.config import REMAT_POLICIES, ModelConfig, ModelConfigError
from templar_jax.model.params import flatten_params
from templar_jax.model.sharding import LOGICAL_RULES, logical_to_spec, mesh_axis_size, parse_mesh_spec

GIB = 1024**3
FP32, BF16 = 4, 2


def sharded_shape(shape: tuple[int, ...], logical_axes, mesh_shape: dict[str, int]) -> tuple[int, ...]:
    """Per-device shape of a parameter under the rules table (ceil division)."""
    spec = logical_to_spec(tuple(logical_axes), tuple(shape), mesh_shape)
    return tuple(math.ceil(n / mesh_axis_size(mesh_shape, rule)) for n, rule in zip(shape, spec))


def sharded_param_elements(cfg: ModelConfig, mesh_shape: dict[str, int]) -> int:
    shapes = flatten_params(param_shapes(cfg))
    axes = flatten_params(param_logical_axes(cfg))
    return sum(math.prod(sharded_shape(shapes[n], axes[n], mesh_shape)) for n in shapes)


def _saved_per_token(cfg: ModelConfig, policy: str, tensor: int) -> float:
    d, f = cfg.d_model, cfg.d_ff
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    everything = 6 * d + (2 * hq + 2 * hkv + 3 * f) / tensor
    if policy in ("none", "everything_saveable"):
        return everything
    if policy in ("dots_saveable", "dots_with_no_batch_dims_saveable"):
        return 3 * d + (2 * hq + 2 * hkv + 2 * f) / tensor
    return d  # full / nothing_saveable


def activation_bytes(cfg: ModelConfig, micro_batch: int, seq_len: int, policy: str, tensor: int) -> float:
    """Activation memory on one device (formula in the module docstring)."""
    t = micro_batch * seq_len
    saved = cfg.n_layers * t * _saved_per_token(cfg, policy, tensor) * BF16
    working = 2 * t * _saved_per_token(cfg, "none", tensor) * BF16
    logits = 2 * t * (cfg.vocab_size / tensor) * FP32
    return saved + working + logits


def gathered_weight_bytes(cfg: ModelConfig, tensor: int) -> float:
    d, f = cfg.d_model, cfg.d_ff
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    layer = (2 * d * hq + 2 * d * hkv + 3 * d * f) / tensor
    return max(2 * layer, cfg.vocab_size * d) * BF16


def plan_memory(
    cfg: ModelConfig,
    mesh: str | dict | None = "fsdp=8",
    *,
    micro_batch: int = 1,
    seq_len: int | None = None,
    remat: str | None = None,
    device_gb: float = 80.0,
) -> dict:
    """Bytes per device for a miner's state and one micro-batch; `fits` compares to device_gb GiB.

    micro_batch is per device (the global micro-batch is micro_batch * data * fsdp).
    """
    mesh_shape = parse_mesh_spec(mesh)
    seq_len = seq_len or cfg.max_seq_len
    remat = remat or cfg.remat_policy
    if remat not in REMAT_POLICIES:
        raise ModelConfigError(f"unknown remat policy {remat!r}; choose from {REMAT_POLICIES}")
    tensor = mesh_axis_size(mesh_shape, LOGICAL_RULES["mlp"])
    p_elems = sharded_param_elements(cfg, mesh_shape)
    rows = {
        "params (fp32)": p_elems * FP32,
        "grads (fp32)": p_elems * FP32,
        "adamw mu+nu (2x fp32)": 2 * p_elems * FP32,
        "error feedback (fp32)": p_elems * FP32,
        "theta0 copy (fp32)": p_elems * FP32,
        "gathered weights (bf16)": gathered_weight_bytes(cfg, tensor),
        f"activations (remat={remat})": activation_bytes(cfg, micro_batch, seq_len, remat, tensor),
    }
    total = sum(rows.values())
    return {
        "param_count": param_count(cfg),
        "param_count_untied": param_count(cfg, untied=True),
        "params_per_device": p_elems,
        "mesh": mesh_shape,
        "devices": math.prod(mesh_shape.values()),
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "remat": remat,
        "rows_bytes": rows,
        "total_bytes": total,
        "device_bytes": device_gb * GIB,
        "fits": total <= device_gb * GIB,
    }
