"""Choose a device mesh for a model on given hardware: fsdp over every device, unless the
per-layer working set does not fit, then tensor parallelism (within a host) as well.

Tensor parallelism does not shrink the sharded training state (params, AdamW moments, grads,
error feedback, theta0 are split over fsdp x tensor either way); it shrinks what one device
must hold for *one layer* at a time: the all-gathered layer weights, that layer's activations
and the logits. So the rule is: smallest tensor size whose plan fits, fsdp = the rest. The
bytes are the memory planner's (plan.py), the same numbers `templar-jax plan` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from templar_jax.model.config import ModelConfig
from templar_jax.model.plan import plan_memory
from templar_jax.model.sharding import parse_mesh_spec

GB = 1e9  # hardware tables give HBM in decimal GB
# Fraction of HBM the planner lets the run use: XLA keeps some for itself and for fragmentation,
# and on GPU the launcher sets XLA_PYTHON_CLIENT_MEM_FRACTION to the same value.
HBM_USABLE_FRACTION = 0.9
TENSOR_CANDIDATES = (1, 2, 4, 8)
# The launchers plan for full per-layer remat (what a large model needs to fit at all).
LAUNCH_REMAT = "full"


class MeshPlanError(ValueError):
    """No mesh fits the model on this hardware, or a given mesh does not match the devices
    (the message carries the numbers)."""


@dataclass(frozen=True)
class MeshPlan:
    mesh: dict[str, int]            # {"data": 1, "fsdp": F, "tensor": T}
    devices: int
    num_processes: int
    devices_per_process: int
    device_bytes: float             # planned peak bytes per device (plan_memory's total)
    budget_bytes: float             # usable HBM per device
    remat: str                      # the remat policy the bytes assume
    offload: tuple[str, ...] = ()   # states planned in host memory (run config `offload`)

    @property
    def mesh_spec(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.mesh.items())


def device_plan(cfg: ModelConfig, mesh: Mapping[str, int], *, micro_batch: int, seq_len: int,
                budget_bytes: float, platform: str, remat: str = LAUNCH_REMAT, offload=(),
                devices_per_host: int | None = None) -> dict:
    """plan_memory for a *global* micro-batch, split over the batch axes (data x fsdp)."""
    batch_shards = mesh.get("data", 1) * mesh.get("fsdp", 1)
    return plan_memory(cfg, dict(mesh), micro_batch=math.ceil(micro_batch / batch_shards),
                       seq_len=seq_len, remat=remat, device_bytes=budget_bytes, platform=platform,
                       offload=offload, devices_per_host=devices_per_host)


def _tensor_ok(cfg: ModelConfig, tensor: int, devices: int, devices_per_host: int) -> bool:
    return (
        devices % tensor == 0
        and devices_per_host % tensor == 0   # keep tensor collectives on the fast in-host links
        and cfg.n_kv_heads % tensor == 0
        and cfg.d_ff % tensor == 0
    )


def plan_mesh(
    cfg: ModelConfig,
    *,
    devices: int,
    devices_per_host: int,
    num_processes: int,
    hbm_gb: float,
    micro_batch: int,
    seq_len: int,
    platform: str,
    mesh_spec: str | Mapping[str, int] = "auto",
    remat: str = LAUNCH_REMAT,
    offload=(),
) -> MeshPlan:
    """Pick (or check) the mesh for `cfg` on `devices` devices of `hbm_gb` GB each.

    `micro_batch` is global (the run config's `inner.micro_batch`). `mesh_spec` other than
    "auto" (e.g. "fsdp=16,tensor=2") is taken as given and only checked against the device
    count; its planned bytes are still reported. `offload`: the run config's offloaded states
    (`OffloadSection.names`), which leave device memory between phases.
    """
    budget = hbm_gb * GB * HBM_USABLE_FRACTION
    if devices % num_processes:
        raise MeshPlanError(f"{devices} devices do not split over {num_processes} processes")

    def make(mesh: dict[str, int]) -> MeshPlan:
        plan = device_plan(cfg, mesh, micro_batch=micro_batch, seq_len=seq_len,
                           budget_bytes=budget, platform=platform, remat=remat, offload=offload,
                           devices_per_host=devices_per_host)
        return MeshPlan(mesh, devices, num_processes, devices // num_processes, plan["total_bytes"], budget,
                        remat, tuple(offload))

    if mesh_spec != "auto":
        mesh = parse_mesh_spec(mesh_spec)
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
