"""`templar-jax plan`: memory per device for a preset on a mesh (shape arithmetic, no allocation)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="memory per device for a model on a mesh: params, AdamW, error feedback, activations",
        description=(
            "Compute, without allocating anything, the bytes per device a SparseLoCo miner needs in "
            "each phase of a window (inner loop, delta, compression, outer step): fp32 params, fp32 "
            "grads, AdamW mu+nu, error feedback, the theta0 copy, FSDP-gathered bf16 weights and an "
            "activation estimate for one micro-batch under the remat policy (formula in "
            "templar_jax/model/plan.py, the planner the launchers use too), and the host RAM the "
            "--offload'ed state takes. Says whether it fits --device-gb (GiB). With --fit: for fsdp "
            "over the mesh's devices, every offload setting's largest micro-batch that fits, and what "
            "a node where nothing fits would need."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="covenant-72b", help="preset name or YAML path")
    p.add_argument("--mesh", default="fsdp=8", help='mesh axes, e.g. "data=2,fsdp=4,tensor=1" (missing = 1)')
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per device per micro-step")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: model max_seq_len)")
    p.add_argument("--remat", default="full", help="remat policy: none, full, dots_saveable, ...")
    p.add_argument("--device-gb", type=float, default=80.0,
                   help="device memory in GiB (with --fit: vendor GB, 90%% of it planned for, as the launchers do)")
    p.add_argument("--offload", default="none",
                   help="state kept in host memory between phases: none, all, or a comma list of "
                        "window_start_params, error_feedback, optimizer (run config `offload`)")
    p.add_argument("--host-gb", type=float, default=None,
                   help="host RAM per host in GiB (with --fit: vendor GB); checked when given")
    p.add_argument("--devices-per-host", type=int, default=None, help="default: all devices, at most 8")
    p.add_argument("--platform", default="gpu", choices=("gpu", "tpu", "cpu"),
                   help="accelerator: decides whether attention is fused (cuDNN) or keeps its scores")
    p.add_argument("--fit", action="store_true", help="verdict per offload setting and what would fit")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def parse_offload(text: str) -> tuple[str, ...]:
    from templar_jax.model.plan import OFFLOADABLE

    if text == "none":
        return ()
    if text == "all":
        return OFFLOADABLE
    return tuple(t.strip() for t in text.split(",") if t.strip())


def run(args) -> int:
    from rich.console import Console

    from templar_jax.model import ModelConfigError, load_model_config
    from templar_jax.model.plan import plan_memory
    from templar_jax.model.sharding import MeshSpecError, parse_mesh_spec

    console = Console()
    try:
        cfg = load_model_config(args.model)
        if args.fit:
            return _print_fit(console, cfg, args, devices=math.prod(parse_mesh_spec(args.mesh).values()))
        plan = plan_memory(
            cfg, args.mesh, micro_batch=args.micro_batch, seq_len=args.seq_len,
            remat=args.remat, device_gb=args.device_gb, platform=args.platform,
            offload=parse_offload(args.offload), devices_per_host=args.devices_per_host, host_gb=args.host_gb,
        )
    except (ModelConfigError, MeshSpecError) as exc:
        console.print(f"[red]plan: {exc}[/red]")
        return 2
    if args.json:
        print(json.dumps(plan))
        return 0
    _print_plan(console, args, plan)
    return 0


def _print_plan(console, args, plan: dict) -> None:
    from rich.table import Table

    from templar_jax.model.plan import GIB

    mesh = ",".join(f"{k}={v}" for k, v in plan["mesh"].items())
    console.print(
        f"{args.model}: {plan['param_count'] / 1e9:.1f}B params "
        f"({plan['param_count_untied'] / 1e9:.1f}B counted untied), mesh {mesh}, "
        f"micro-batch {plan['micro_batch']} x {plan['seq_len']} tokens per device, "
        f"offload: {', '.join(plan['offload']) or 'none'}"
    )
    phases = plan["phases_rows_bytes"]
    table = Table()
    table.add_column("per device (GiB)")
    for name in phases:
        table.add_column(name + (" *" if name == plan["peak_phase"] else ""), justify="right")
    rows = list(dict.fromkeys(r for p in phases.values() for r in p))
    for row in rows:
        table.add_row(row, *(f"{p[row] / GIB:,.2f}" if row in p else "-" for p in phases.values()))
    table.add_row("[bold]total[/bold]", *(f"[bold]{b / GIB:,.2f}[/bold]" for b in plan["phases_bytes"].values()))
    console.print(table)
    verdict = "[green]fits[/green]" if plan["fits"] else "[red]does NOT fit[/red]"
    console.print(
        f"{plan['params_per_device'] / 1e9:.2f}B params per device; peak {plan['total_bytes'] / GIB:,.2f} GiB "
        f"({plan['peak_phase']}); {verdict} in {args.device_gb:g} GiB"
    )
    host = f"host RAM for offloaded state: {plan['host_bytes'] / GIB:,.1f} GiB per host " \
           f"({plan['devices_per_host']} devices)"
    if plan["host_fits"] is not None:
        host += "; fits" if plan["host_fits"] else f"; does NOT fit {args.host_gb:g} GiB"
    console.print(host)


def _print_fit(console, cfg, args, *, devices: int) -> int:
    from rich.table import Table

    from templar_jax.model.fit import GB, fit_report

    report = fit_report(cfg, devices=devices, device_gb=args.device_gb, host_gb=args.host_gb,
                        devices_per_host=args.devices_per_host, platform=args.platform,
                        seq_len=args.seq_len, remat=args.remat)
    if args.json:
        print(json.dumps(dataclasses.asdict(report)))
        return 0
    console.print(f"{args.model} on {devices} devices (fsdp={devices}) of {args.device_gb:g} GB "
                  f"(usable {report.budget_bytes / GB:.1f} GB), remat {args.remat}")
    table = Table()
    for col in ("offload", "largest micro-batch", "peak GB/device", "peak phase", "host GB/host", "fits"):
        table.add_column(col)
    for v in report.verdicts:
        table.add_row(v.offload, str(v.micro_batch or "-"), f"{v.device_bytes / GB:.1f}", v.peak_phase,
                      f"{v.host_bytes / GB:.0f}", "[green]yes[/green]" if v.fits else "[red]no[/red]")
    console.print(table)
    for need in report.needs:
        console.print(f"would fit with: {need}")
    return 0
