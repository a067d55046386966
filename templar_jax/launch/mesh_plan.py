"""Choose a device mesh for a model on given hardware: fsdp over every device, unless the
per-layer working set does not fit, then tensor parallelism (within a host) as well.

Tensor parallelism does not shrink the sharded training state (params, AdamW moments, grads,
error feedback, theta0 are split over fsdp x tensor either way); it shrinks what one device
must hold for *one layer* at a time: the all-gathered layer weights, that layer's activations
and the logits. So the rule is: smallest tensor size whose estimate fits, fsdp = the rest.

The byte estimate here is a coarse, documented upper bound used when the foundation's
`plan_memory` is not importable; `estimate_device_bytes` names each term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

GB = 1e9
# Fraction of HBM the planner lets the run use: XLA keeps some for itself and for fragmentation,
# and on GPU the launcher sets XLA_PYTHON_CLIENT_MEM_FRACTION to the same value.
HBM_USABLE_FRACTION = 0.9
# Training-state bytes per parameter, all float32: params 4 + AdamW mu/nu 8 + grads 4
# + SparseLoCo error feedback 4 + theta0 (window-start copy) 4.
STATE_BYTES_PER_PARAM = 24
COMPUTE_BYTES = 2  # bfloat16 activations and gathered weights
TENSOR_CANDIDATES = (1, 2, 4, 8)


class MeshPlanError(ValueError):
    """No mesh fits the model on this hardware (the message carries the numbers)."""


@dataclass(frozen=True)
class MeshPlan:
    mesh: dict[str, int]            # {"data": 1, "fsdp": F, "tensor": T}
    devices: int
    num_processes: int
    devices_per_process: int
    device_bytes: float             # estimated peak bytes per device
    budget_bytes: float             # usable HBM per device
    source: str                     # "launcher-estimate" or "foundation-plan"

    @property
    def mesh_spec(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.mesh.items())


def layer_param_count(cfg: Any) -> int:
    d, hd = cfg.d_model, cfg.head_dim
    attn = d * cfg.n_heads * hd * 2 + d * cfg.n_kv_heads * hd * 2
    mlp = 3 * d * cfg.d_ff
    return attn + mlp + 2 * d


def model_param_count(cfg: Any) -> int:
    """Parameters as stored (tied embedding counted once), per docs/interfaces.md layout."""
    embed = cfg.vocab_size * cfg.d_model
    head = 0 if cfg.tie_embeddings else embed
    return embed + head + cfg.n_layers * layer_param_count(cfg) + cfg.d_model


def estimate_device_bytes(
    cfg: Any, fsdp: int, tensor: int, micro_batch: int, seq_len: int
) -> dict[str, float]:
    """Per-device bytes by term, assuming full per-layer remat and batch sharded over fsdp."""
    n_dev = fsdp * tensor
    seqs = math.ceil(micro_batch / fsdp)
    tokens = seqs * seq_len
    d, hd = cfg.d_model, cfg.head_dim
    live_width = 6 * d + 2 * (cfg.n_heads + 2 * cfg.n_kv_heads) * hd / tensor + 3 * cfg.d_ff / tensor
    return {
        "state": model_param_count(cfg) * STATE_BYTES_PER_PARAM / n_dev,
        # current + prefetched layer, all-gathered over fsdp, still split over tensor
        "gathered_layers": 2 * layer_param_count(cfg) * COMPUTE_BYTES / tensor,
        "saved_layer_inputs": cfg.n_layers * tokens * d * COMPUTE_BYTES,
        "layer_activations": 2 * tokens * live_width * COMPUTE_BYTES,
        "attention_scores": seqs * (cfg.n_heads / tensor) * seq_len * seq_len * 4,
        # f32 logits, their softmax and gradient
        "logits": 3 * tokens * cfg.vocab_size / tensor * 4,
    }


def _tensor_ok(cfg: Any, tensor: int, devices: int, devices_per_host: int) -> bool:
    return (
        devices % tensor == 0
        and devices_per_host % tensor == 0   # keep tensor collectives on the fast in-host links
        and cfg.n_kv_heads % tensor == 0
        and cfg.d_ff % tensor == 0
    )


def plan_mesh(
    cfg: Any,
    *,
    devices: int,
    devices_per_host: int,
    num_processes: int,
    hbm_gb: float,
    micro_batch: int,
    seq_len: int,
    mesh_spec: str | Mapping[str, int] = "auto",
) -> MeshPlan:
    """Pick (or check) the mesh for `cfg` on `devices` devices of `hbm_gb` each.

    `mesh_spec` other than "auto" (e.g. "fsdp=16,tensor=2") is taken as given and only
    checked against the device count; its byte estimate is still reported.
    """
    budget = hbm_gb * GB * HBM_USABLE_FRACTION
    if devices % num_processes:
        raise MeshPlanError(f"{devices} devices do not split over {num_processes} processes")

    def make(mesh: dict[str, int]) -> MeshPlan:
        est = estimate_device_bytes(cfg, mesh["data"] * mesh["fsdp"], mesh["tensor"], micro_batch, seq_len)
        return MeshPlan(mesh, devices, num_processes, devices // num_processes,
                        sum(est.values()), budget, "launcher-estimate")

    if mesh_spec != "auto":
        mesh = _parse(mesh_spec)
        if math.prod(mesh.values()) != devices:
            raise MeshPlanError(f"mesh {mesh} needs {math.prod(mesh.values())} devices, have {devices}")
        return make(mesh)
    tried = []
    for tensor in TENSOR_CANDIDATES:
        if not _tensor_ok(cfg, tensor, devices, devices_per_host):
            continue
        plan = make({"data": 1, "fsdp": devices // tensor, "tensor": tensor})
        if plan.device_bytes <= budget:
            return plan
        tried.append(f"tensor={tensor}: {plan.device_bytes / GB:.1f} GB")
    raise MeshPlanError(
        f"model does not fit {devices} devices of {hbm_gb:g} GB (usable {budget / GB:.1f} GB each); "
        f"estimates {'; '.join(tried) or 'none tried'}; use a bigger slice or smaller micro_batch"
    )


def _parse(spec: str | Mapping[str, int]) -> dict[str, int]:
    axes = ("data", "fsdp", "tensor")
    if isinstance(spec, Mapping):
        sizes = {str(k): int(v) for k, v in spec.items()}
    else:
        sizes = {}
        for part in spec.replace(" ", "").split(","):
            name, sep, value = part.partition("=")
            if not sep or not value.isdigit():
                raise MeshPlanError(f"mesh entry {part!r} is not AXIS=INT")
            sizes[name] = int(value)
    unknown = sorted(set(sizes) - set(axes))
    if unknown or any(v <= 0 for v in sizes.values()):
        raise MeshPlanError(f"bad mesh {sizes}: axes are {axes}, sizes positive")
    return {a: sizes.get(a, 1) for a in axes}
