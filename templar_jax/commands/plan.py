"""`templar-jax plan`: memory per device for a preset on a mesh (shape arithmetic, no allocation)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan",
        help="memory per device for a model on a mesh: params, AdamW, error feedback, activations",
        description=(
            "Compute, without allocating anything, the bytes per device a SparseLoCo miner needs: "
            "fp32 params, fp32 grads, AdamW mu+nu, error feedback, the theta0 copy, FSDP-gathered "
            "bf16 weights and an activation estimate for one micro-batch under the remat policy "
            "(formula in templar_jax/model/plan.py, the planner the launchers use too). Says "
            "whether it fits --device-gb (GiB)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="covenant-72b", help="preset name or YAML path")
    p.add_argument("--mesh", default="fsdp=8", help='mesh axes, e.g. "data=2,fsdp=4,tensor=1" (missing = 1)')
    p.add_argument("--micro-batch", type=int, default=1, help="sequences per device per micro-step")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default: model max_seq_len)")
    p.add_argument("--remat", default="full", help="remat policy: none, full, dots_saveable, ...")
    p.add_argument("--device-gb", type=float, default=80.0, help="device memory in GiB")
    p.add_argument("--platform", default="gpu", choices=("gpu", "tpu", "cpu"),
                   help="accelerator: decides whether attention is fused (cuDNN) or keeps its scores")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console
    from rich.table import Table

    from templar_jax.model import ModelConfigError, load_model_config
    from templar_jax.model.plan import GIB, plan_memory
    from templar_jax.model.sharding import MeshSpecError

    console = Console()
    try:
        cfg = load_model_config(args.model)
        plan = plan_memory(
            cfg, args.mesh, micro_batch=args.micro_batch, seq_len=args.seq_len,
            remat=args.remat, device_gb=args.device_gb, platform=args.platform,
        )
    except (ModelConfigError, MeshSpecError) as exc:
        console.print(f"[red]plan: {exc}[/red]")
        return 2
    if args.json:
        print(json.dumps(plan))
        return 0
    mesh = ",".join(f"{k}={v}" for k, v in plan["mesh"].items())
    console.print(
        f"{args.model}: {plan['param_count'] / 1e9:.1f}B params "
        f"({plan['param_count_untied'] / 1e9:.1f}B counted untied), mesh {mesh}, "
        f"micro-batch {plan['micro_batch']} x {plan['seq_len']} tokens per device"
    )
    table = Table()
    table.add_column("per device")
    table.add_column("GiB", justify="right")
    for name, nbytes in plan["rows_bytes"].items():
        table.add_row(name, f"{nbytes / GIB:,.2f}")
    table.add_row("[bold]total[/bold]", f"[bold]{plan['total_bytes'] / GIB:,.2f}[/bold]")
    console.print(table)
    verdict = "[green]fits[/green]" if plan["fits"] else "[red]does NOT fit[/red]"
    console.print(
        f"{plan['params_per_device'] / 1e9:.2f}B params per device; {verdict} in {args.device_gb:g} GiB"
    )
    return 0
