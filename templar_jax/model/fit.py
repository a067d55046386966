"""Does a model fit a node, and if not, what would it need: the memory planner (plan.py) asked
the questions a user asks before renting hardware.

    report = fit_report(cfg, devices=8, device_gb=192, host_gb=2000, platform="gpu")
    report.verdicts   # per offload setting: fits?, largest micro-batch, bytes per device and host
    report.needs      # when nothing fits: more devices, bf16 AdamW moments, ...

Hardware sizes are decimal GB (as vendors state them); the usable share of device memory is
mesh_choice's HBM_USABLE_FRACTION, the same the launchers plan with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from templar_jax.model.config import ModelConfig
from templar_jax.model.mesh_choice import GB, HBM_USABLE_FRACTION
from templar_jax.model.plan import BF16, FP32, OFFLOADABLE, plan_memory

MICRO_BATCHES = (1, 2, 4, 8, 16, 32, 64)
OFFLOAD_SETTINGS = {"none": (), **{k: (k,) for k in OFFLOADABLE}, "all": OFFLOADABLE}


@dataclass(frozen=True)
class Verdict:
    offload: str                 # a key of OFFLOAD_SETTINGS
    micro_batch: int             # largest per-device micro-batch that fits (0: none)
    device_bytes: float          # planned peak per device at that micro-batch (or at 1)
    peak_phase: str
    host_bytes: float            # offloaded state per host
    fits: bool                   # device and host both


@dataclass(frozen=True)
class FitReport:
    devices: int
    budget_bytes: float          # usable bytes per device
    host_budget_bytes: float | None
    verdicts: list[Verdict]
    needs: list[str] = field(default_factory=list)


def _host_ok(plan: dict, host_budget: float | None) -> bool:
    return host_budget is None or plan["host_bytes"] <= host_budget


def largest_micro_batch(cfg, devices, offload, budget, per_host, seq_len, remat, platform,
                        moment_bytes=FP32) -> tuple[int, dict]:
    """Largest micro-batch of MICRO_BATCHES whose plan (fsdp over `devices`) fits `budget`
    (0 and the mb=1 plan if none)."""
    best, plan = 0, None
    for mb in MICRO_BATCHES:
        p = plan_memory(cfg, {"data": 1, "fsdp": devices, "tensor": 1}, micro_batch=mb, seq_len=seq_len,
                        remat=remat, device_bytes=budget, platform=platform, offload=offload,
                        devices_per_host=per_host, moment_bytes=moment_bytes)
        if not p["fits"]:
            break
        best, plan = mb, p
    return best, p if plan is None else plan


def fit_report(cfg: ModelConfig, *, devices: int, device_gb: float, host_gb: float | None = None,
               devices_per_host: int | None = None, platform: str = "gpu", seq_len: int | None = None,
               remat: str = "full") -> FitReport:
    """Verdicts for fsdp over `devices` devices of `device_gb` GB, for each offload setting, and
    (when even full offload does not fit) what would: more devices, or bf16 AdamW moments."""
    per_host = devices_per_host or min(devices, 8)
    budget = device_gb * GB * HBM_USABLE_FRACTION
    host_budget = None if host_gb is None else host_gb * GB
    verdicts = []
    for name, offload in OFFLOAD_SETTINGS.items():
        mb, plan = largest_micro_batch(cfg, devices, offload, budget, per_host, seq_len, remat, platform)
        verdicts.append(Verdict(name, mb, plan["total_bytes"], plan["peak_phase"], plan["host_bytes"],
                                mb > 0 and _host_ok(plan, host_budget)))
    needs = [] if any(v.fits for v in verdicts) else _needs(cfg, devices, per_host, budget, host_budget,
                                                             seq_len, remat, platform)
    return FitReport(devices, budget, host_budget, verdicts, needs)


def _needs(cfg, devices, per_host, budget, host_budget, seq_len, remat, platform) -> list[str]:
    out = []
    mb, plan = largest_micro_batch(cfg, devices, OFFLOADABLE, budget, per_host, seq_len, remat, platform,
                                   moment_bytes=BF16)
    if mb and _host_ok(plan, host_budget):
        out.append(f"bf16 AdamW moments (mu, nu) with every offload on: {plan['total_bytes'] / GB:.1f} GB "
                   f"per device at micro-batch {mb} (the trainer keeps fp32 moments today)")
    for name, offload in (("every offload on", OFFLOADABLE), ("no offload", ())):
        for more in (2, 4, 8, 16):
            n = devices * more
            mb, plan = largest_micro_batch(cfg, n, offload, budget, per_host, seq_len, remat, platform)
            if mb and _host_ok(plan, host_budget):
                out.append(f"{n} devices (fsdp={n}, {name}): {plan['total_bytes'] / GB:.1f} GB per device "
                           f"at micro-batch {mb}")
                break
    return out
