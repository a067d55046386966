"""Memory plan per device, by shape arithmetic over the sharded shapes (no allocation).

The one planner: `templar-jax plan` prints it, and the launchers pick their mesh with it
(mesh_choice.py). Per device, for a SparseLoCo miner:
  params        fp32, sharded by the logical-axis rules (parameter table + sharding.py)
  grads         fp32, same sharding (the accumulated gradient)
  adamw         2 x fp32 (mu, nu), same sharding
  error_fb      fp32 SparseLoCo error feedback, same sharding
  theta0        fp32 copy of the global params at window start, same sharding
  gathered      bf16 weights that FSDP all-gathers at use: the larger of two layers' weights
                (the one computing + the next one prefetched; split only over `tensor`) and the
                embedding table (the logits gather the whole table). XLA:CPU has no bf16
                collectives: it gathers in fp32 and converts after, so platform "cpu" counts 4 bytes
  activations   see `activation_bytes`
  attn scores   only for unfused attention, see `attention_score_bytes`

Phases. The inner loop is not the only peak: the miner also holds, per device,
  train     params, grads, AdamW, activations (+ theta0 and error feedback unless offloaded)
            and the tied embedding table's gradient (`embedding_grad_bytes`): split over fsdp
            alone (fsdp_embedding.py) one fp32 vocabulary slice of it plus the logits' share of
            its shard; otherwise the fp32 table gathered whole plus its whole fp32 gradient
            (what the SPMD partitioner holds before the reduce-scatter). AdamW updates in place
            (params and state donated): no temporaries of its own
  compress  theta0 + theta_H -> delta, then EF in + EF out beside delta, the compression's
            temporaries (one fp32 copy of the largest per-device tensor: tensors are
            compressed one after another) and the payload
            (int32 index + uint8 code per kept value) (+ AdamW, + theta0 unless offloaded)
  outer     theta0, the dense aggregate and the new params (+ EF and AdamW unless offloaded)
`offload` names the states that wait in host memory between phases (run config `offload`,
model/offload.py): they leave these sums and count in the host's RAM instead
(`host_bytes` = offloaded bytes per device x devices per host). The peak phase is the plan's
total. bench/plan_vs_xla.py compares each phase with XLA's memory_analysis() of the same program
(72B on 8 and 64 devices: within 5%).

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
        + 2 * t * V/T * 4                            (fp32 logits and their gradient: XLA
                                                   fuses the log-softmax into them)
Attention fused by cuDNN (GPU, 16-bit compute) keeps no L x L score matrix. XLA's attention
(TPU, CPU, fp32) materialises fp32 scores micro_batch * n_heads/T * seq_len^2 * 4 bytes per
layer: one layer's while it runs, plus every layer's when the policy saves them (none,
everything_saveable, dots_saveable: the scores are a batched dot).
"""

from __future__ import annotations

import math

from templar_jax.model.config import REMAT_POLICIES, ModelConfig, ModelConfigError
from templar_jax.model.fsdp_embedding import LOGITS_GRAD_CHUNKS, per_shard_table
from templar_jax.model.layers import attention_backend
from templar_jax.model.param_table import embedding_param_count, param_count, param_table
from templar_jax.model.sharding import LOGICAL_RULES, logical_to_spec, mesh_axis_size, parse_mesh_spec

GIB = 1024**3
FP32, BF16 = 4, 2
# run config offload keys (config.sections.OffloadSection) the plan understands
OFFLOADABLE = ("window_start_params", "error_feedback", "optimizer")
# Policies under which the backward pass keeps every layer's attention scores.
SCORE_SAVING_POLICIES = ("none", "everything_saveable", "dots_saveable")


def sharded_shape(shape: tuple[int, ...], logical_axes, mesh_shape: dict[str, int]) -> tuple[int, ...]:
    """Per-device shape of a parameter under the rules table (ceil division)."""
    spec = logical_to_spec(tuple(logical_axes), tuple(shape), mesh_shape)
    return tuple(math.ceil(n / mesh_axis_size(mesh_shape, rule)) for n, rule in zip(shape, spec))


def sharded_param_elements(cfg: ModelConfig, mesh_shape: dict[str, int]) -> int:
    """Parameters one device holds (indivisible dimensions stay whole)."""
    return sum(math.prod(sharded_shape(s.shape, s.logical_axes, mesh_shape))
               for s in param_table(cfg).values())


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


def attention_score_bytes(cfg: ModelConfig, micro_batch: int, seq_len: int, policy: str, tensor: int) -> float:
    """fp32 attention scores of unfused (XLA) attention on one device (module docstring)."""
    per_layer = micro_batch * (cfg.n_heads / tensor) * seq_len * seq_len * FP32
    kept = cfg.n_layers if policy in SCORE_SAVING_POLICIES else 0
    return (kept + 1) * per_layer


def gathered_weight_bytes(cfg: ModelConfig, tensor: int, element_bytes: int = BF16) -> float:
    """Weights gathered at use (bf16: `element_bytes` 2): two layers (split over tensor) or the
    embedding table."""
    split = {"tensor": tensor}
    layer = sum(math.prod(sharded_shape(s.layer_shape, s.logical_axes[s.batch_dims:], split))
                for s in param_table(cfg).values() if s.stacked)
    return max(2 * layer, embedding_param_count(cfg)) * element_bytes


def largest_tensor_bytes(cfg: ModelConfig, mesh_shape: dict[str, int]) -> float:
    """fp32 bytes of the largest per-device parameter (a stacked [layers, ...] tensor)."""
    return max(math.prod(sharded_shape(s.shape, s.logical_axes, mesh_shape))
               for s in param_table(cfg).values()) * FP32


def embedding_grad_bytes(cfg: ModelConfig, mesh_shape: dict[str, int], micro_batch: int) -> float:
    """Bytes the embedding table's gradient takes beyond its fp32 shard in `grads` (module
    docstring): per shard (fsdp_embedding.py) one vocabulary slice of the fp32 gradient plus the
    logits' share of the shard; otherwise the fp32 table gathered whole plus its whole fp32
    gradient (split only over `tensor`)."""
    table = embedding_param_count(cfg)
    rows = micro_batch * mesh_shape["data"] * mesh_shape["fsdp"]
    if cfg.tie_embeddings and per_shard_table(mesh_shape, (cfg.vocab_size, cfg.d_model), rows):
        return (math.ceil(table / LOGITS_GRAD_CHUNKS) + table // mesh_shape["fsdp"]) * FP32
    tensor = mesh_axis_size(mesh_shape, LOGICAL_RULES["mlp"])
    return 2 * math.ceil(table / tensor) * FP32


def payload_bytes(param_elements: float, topk: int = 64, chunk: int = 64) -> float:
    """A payload's device bytes: an int32 index and a uint8 code per kept value."""
    return param_elements * topk / (chunk * chunk) * 5


def check_offload(offload) -> frozenset[str]:
    unknown = set(offload) - set(OFFLOADABLE)
    if unknown:
        raise ModelConfigError(f"unknown offload {sorted(unknown)}; choose from {OFFLOADABLE}")
    return frozenset(offload)


def state_bytes(state: float, moment_bytes: int = FP32) -> dict:
    """{OFFLOADABLE name: bytes per device} of the states that may wait in host memory;
    `state` = one fp32 param-shaped tree per device."""
    return {"window_start_params": state, "error_feedback": state, "optimizer": 2 * state * moment_bytes / FP32}


def phase_rows(state: float, offload: frozenset[str], train_extra: dict, payload: float,
               moment_bytes: int = FP32, compress_temp: float | None = None) -> dict:
    """{phase: {row: bytes}} on one device; `state` = one fp32 param-shaped tree per device;
    AdamW's mu and nu take `moment_bytes` per parameter each; `compress_temp` = the compression's
    temporaries (default: one state)."""
    moments = {f"adamw mu+nu (2x {'fp32' if moment_bytes == FP32 else 'bf16'})":
               state_bytes(state, moment_bytes)["optimizer"]}
    adamw = {} if "optimizer" in offload else moments
    theta0 = {} if "window_start_params" in offload else {"theta0 copy (fp32)": state}
    ef = {} if "error_feedback" in offload else {"error feedback (fp32)": state}
    train = {"params (fp32)": state, "grads (fp32)": state, **moments, **theta0, **ef, **train_extra}
    # the delta is computed from a device copy of theta0 and theta_H; then theta_H is freed
    # and the error feedback comes in (and a new one goes out) beside the delta
    delta = {"theta0 + theta_H + delta (3x fp32)": 3 * state, **adamw, **ef}
    compress = {"delta (fp32)": state, "error feedback in + out (2x fp32)": 2 * state,
                "compression temporaries (largest tensor, fp32)": state if compress_temp is None else compress_temp,
                "payload (int32 + uint8 per value)": payload,
                **adamw, **theta0}
    outer = {"theta0 + aggregate + new params (3x fp32)": 3 * state, **adamw, **ef}
    return {"train": train, "delta": delta, "compress": compress, "outer": outer}


def plan_memory(
    cfg: ModelConfig,
    mesh: str | dict | None = "fsdp=8",
    *,
    micro_batch: int = 1,
    seq_len: int | None = None,
    remat: str | None = None,
    device_gb: float = 80.0,
    device_bytes: float | None = None,
    platform: str = "gpu",
    offload=(),
    devices_per_host: int | None = None,
    host_gb: float | None = None,
    moment_bytes: int = FP32,
) -> dict:
    """Bytes per device for a miner's state and one micro-batch; `fits` compares the total to
    `device_bytes` (default `device_gb` GiB).

    micro_batch is per device (the global micro-batch is micro_batch * data * fsdp).
    `platform` ("gpu", "tpu", "cpu") decides whether attention is fused (model.attention_impl)
    and whether gathered weights count bf16 or (cpu) fp32.
    `offload`: names from OFFLOADABLE kept in host memory between phases; `host_bytes` is their
    sum over the `devices_per_host` devices of one host (default: all, at most 8), checked
    against `host_gb` GiB when given (`host_fits`). `moment_bytes` = 2 plans bf16 AdamW moments
    (a what-if for `model/fit.py`; the trainer keeps them in fp32).
    """
    offload = check_offload(offload)
    mesh_shape = parse_mesh_spec(mesh)
    seq_len = seq_len or cfg.max_seq_len
    remat = remat or cfg.remat_policy
    if remat not in REMAT_POLICIES:
        raise ModelConfigError(f"unknown remat policy {remat!r}; choose from {REMAT_POLICIES}")
    budget = device_gb * GIB if device_bytes is None else device_bytes
    tensor = mesh_axis_size(mesh_shape, LOGICAL_RULES["mlp"])
    p_elems = sharded_param_elements(cfg, mesh_shape)
    # XLA:CPU upcasts bf16 collectives to fp32 (module docstring)
    gathered_row, gathered_elem = (("gathered weights (bf16; fp32 on cpu)", FP32) if platform == "cpu"
                                   else ("gathered weights (bf16)", BF16))
    extra = {
        gathered_row: gathered_weight_bytes(cfg, tensor, gathered_elem),
        f"activations (remat={remat})": activation_bytes(cfg, micro_batch, seq_len, remat, tensor),
        "embedding gradient beyond its shard (fp32)": embedding_grad_bytes(cfg, mesh_shape, micro_batch),
    }
    if attention_backend(cfg, platform) != "cudnn":
        extra["attention scores (fp32, unfused)"] = attention_score_bytes(cfg, micro_batch, seq_len, remat, tensor)
    state = p_elems * FP32
    phases = phase_rows(state, offload, extra, payload_bytes(p_elems), moment_bytes,
                        largest_tensor_bytes(cfg, mesh_shape))
    phase_bytes = {name: sum(rows.values()) for name, rows in phases.items()}
    peak = max(phase_bytes, key=phase_bytes.get)
    total = phase_bytes[peak]
    devices = math.prod(mesh_shape.values())
    per_host = devices_per_host or min(devices, 8)
    offloaded = state_bytes(state, moment_bytes)
    host = sum(offloaded[k] for k in offload) * per_host
    return {
        "param_count": param_count(cfg),
        "param_count_untied": param_count(cfg, untied=True),
        "params_per_device": p_elems,
        "mesh": mesh_shape,
        "devices": devices,
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "remat": remat,
        "platform": platform,
        "offload": sorted(offload),
        "rows_bytes": phases["train"],
        "phases_rows_bytes": phases,
        "phases_bytes": phase_bytes,
        "peak_phase": peak,
        "total_bytes": total,
        "device_bytes": budget,
        "fits": total <= budget,
        "devices_per_host": per_host,
        "host_bytes": host,
        "host_budget_bytes": None if host_gb is None else host_gb * GIB,
        "host_fits": None if host_gb is None else host <= host_gb * GIB,
    }
