"""`templar-jax launch {tpu,gpu,check}`: start runs on TPU pod slices and GPU clusters.

Every action prints the exact commands with --dry-run instead of running them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

TPU_ACTIONS = ("plan", "create", "install", "copy", "start", "stop", "logs", "delete", "up")
GPU_ACTIONS = ("plan", "sbatch", "start", "stop", "logs")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "launch", help="run on a TPU pod slice or GPU cluster (see launch/README.md)",
        description="Generate and run the commands that start templar-jax on many hosts. "
                    "Use --dry-run to print them without running anything.",
    )
    sub = p.add_subparsers(dest="launch_target", metavar="TARGET", required=True)

    tpu = sub.add_parser("tpu", help="Cloud TPU pod slice via gcloud",
                         description="Actions: plan (mesh only), create, install, copy (run config + "
                                     "secrets), start, stop, logs, delete, up (= create+install+copy+start).")
    _tpu_options(tpu)
    tpu.set_defaults(func=_tpu)

    gpu = sub.add_parser("gpu", help="8-GPU nodes via SLURM sbatch or plain ssh",
                         description="Actions: plan, sbatch (render + submit a batch script), start / stop / "
                                     "logs (ssh to the cluster file's hosts).")
    _gpu_options(gpu)
    gpu.set_defaults(func=_gpu)

    check = sub.add_parser("check", help="run a sharded computation over all processes/devices and report",
                           description="Run under the entry point on every process, e.g. "
                                       "`templar-jax launch tpu start ... -- launch check`.")
    check.set_defaults(func=_check)


def _tpu_options(tpu: argparse.ArgumentParser, with_rest: bool = True) -> None:
    tpu.add_argument("action", choices=TPU_ACTIONS)
    tpu.add_argument("--name", required=not with_rest, help="TPU / queued-resource name")
    tpu.add_argument("--zone", required=not with_rest, help="e.g. us-east5-a")
    tpu.add_argument("--slice", required=not with_rest, help="launch/tpu/slices/NAME.yaml (v5p-64, v5e-8, v5e-16, v4-32) or a path")
    tpu.add_argument("--project", help="GCP project (default: gcloud's configured project)")
    tpu.add_argument("--direct", action="store_true", help="tpu-vm create instead of a queued resource")
    tpu.add_argument("--spot", action="store_true", help="spot (preemptible) capacity")
    tpu.add_argument("--install", choices=("archive", "git"), default="archive",
                     help="archive: copy `git archive HEAD` of this checkout; git: clone --git-url on the workers")
    tpu.add_argument("--git-url")
    tpu.add_argument("--git-ref", default="main")
    tpu.add_argument("--worker", default="0", help="logs: worker index or 'all'")
    tpu.add_argument("--follow", action="store_true", help="logs: keep following")
    _common(tpu, with_rest)


def _gpu_options(gpu: argparse.ArgumentParser, with_rest: bool = True) -> None:
    gpu.add_argument("action", choices=GPU_ACTIONS)
    gpu.add_argument("--cluster", required=not with_rest, help="launch/gpu/clusters/NAME.yaml or a path")
    gpu.add_argument("--hosts", help="comma-separated hosts (overrides the cluster file; first coordinates)")
    gpu.add_argument("--process-per", choices=("node", "gpu"), help="override the cluster file")
    gpu.add_argument("--script", default="launch/gpu/templar.sbatch", help="sbatch: where to write the script")
    gpu.add_argument("--job-name", default="templar-jax")
    gpu.add_argument("--time", default="24:00:00", help="sbatch --time")
    gpu.add_argument("--partition")
    gpu.add_argument("--account")
    gpu.add_argument("--process", type=int, default=0, help="logs: process id")
    _common(gpu, with_rest)


def _common(p: argparse.ArgumentParser, with_rest: bool) -> None:
    p.add_argument("--run-config", help="shipped run config NAME or a YAML path: plans the mesh; copied to TPU workers")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="run-config override (repeatable)")
    p.add_argument("--secret", action="append", default=[], type=Path,
                   help="TPU: file copied to ~/.templar/ on every worker, mode 600 (repeatable)")
    p.add_argument("--lines", type=int, default=100, help="logs: lines to show")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    if with_rest:
        p.add_argument("rest", nargs=argparse.REMAINDER, metavar="... -- SUBCOMMAND",
                       help="options, then after '--' the templar-jax subcommand every process runs")


def _reparse(args, add_options) -> tuple[argparse.Namespace, list[str]]:
    """argparse cannot mix options after a positional with a trailing `-- cmd ...`, so the
    registered parser collects everything after ACTION in `rest` and this re-parses it."""
    rest = list(args.rest)
    sub: list[str] = []
    if "--" in rest:
        i = rest.index("--")
        rest, sub = rest[:i], rest[i + 1:]
    parser = argparse.ArgumentParser(prog=f"templar-jax launch {args.launch_target}")
    add_options(parser, with_rest=False)
    return parser.parse_args([args.action, *rest], namespace=args), sub


def _plan_line(args, devices: int, per_host: int, processes: int, hbm_gb: float, platform: str) -> str | None:
    if not args.run_config:
        return None
    from templar_jax.model.mesh_choice import plan_mesh
    from templar_jax.config import load_run_config
    from templar_jax.model.config import load_model_config

    rc = load_run_config(args.run_config, args.set)
    cfg = load_model_config(rc.model.preset, **rc.model.overrides)
    plan = plan_mesh(cfg, devices=devices, devices_per_host=per_host, num_processes=processes,
                     hbm_gb=hbm_gb, micro_batch=rc.inner.micro_batch,
                     seq_len=rc.data.seq_len, mesh_spec=rc.mesh.spec, platform=platform,
                     offload=rc.offload.names)
    return (f"# plan: mesh {plan.mesh_spec} | {plan.num_processes} processes x "
            f"{plan.devices_per_process} devices | ~{plan.device_bytes / 1e9:.1f} GB of "
            f"{plan.budget_bytes / 1e9:.1f} GB usable per device (remat={plan.remat})")


def _user_errors(func):
    """Config, hardware and plan errors (all ValueError subclasses) end the command with
    their message and exit code 2 instead of a traceback."""

    def wrapped(args) -> int:
        try:
            return func(args)
        except ValueError as err:
            print(f"templar-jax launch: {type(err).__name__}: {err}", file=sys.stderr)
            return 2

    wrapped.__name__ = func.__name__
    return wrapped


@_user_errors
def _tpu(args) -> int:
    from templar_jax.launch import tpu
    from templar_jax.launch.hardware import load_tpu_slice
    from templar_jax.config import resolve_run_config_path
    from templar_jax.launch.shell import run_steps

    args, sub = _reparse(args, _tpu_options)
    s = load_tpu_slice(args.slice)
    target = tpu.TpuTarget(
        name=args.name, zone=args.zone, slice=s, project=args.project, queued=not args.direct,
        spot=args.spot, install=args.install, git_url=args.git_url, git_ref=args.git_ref,
        run_config=resolve_run_config_path(args.run_config) if args.run_config else None,
        secrets=tuple(args.secret),
    )
    plan = _plan_line(args, s.chips, s.chips_per_host, s.hosts, s.hbm_gb_per_chip, "tpu")
    if plan:
        print(plan)
    steps = {
        "plan": lambda: [],
        "create": lambda: tpu.create_steps(target),
        "install": lambda: tpu.install_steps(target),
        "copy": lambda: tpu.copy_steps(target),
        "start": lambda: tpu.start_steps(target, sub),
        "stop": lambda: tpu.stop_steps(target),
        "logs": lambda: tpu.logs_steps(target, args.worker, args.lines, args.follow),
        "delete": lambda: tpu.delete_steps(target),
        "up": lambda: tpu.up_steps(target, sub),
    }[args.action]
    try:
        built = steps()
    except ValueError as err:
        print(f"launch tpu {args.action}: {err}", file=sys.stderr)
        return 2
    return run_steps(built, dry_run=args.dry_run)


@_user_errors
def _gpu(args) -> int:
    from templar_jax.launch import gpu
    from templar_jax.launch.hardware import load_gpu_cluster
    from templar_jax.launch.shell import run_steps

    args, sub = _reparse(args, _gpu_options)
    c = load_gpu_cluster(args.cluster)
    if args.hosts:
        hosts = tuple(h for h in args.hosts.split(",") if h)
        c = dataclasses.replace(c, hosts=hosts, nodes=len(hosts))
    if args.process_per:
        c = dataclasses.replace(c, process_per=args.process_per)
    plan = _plan_line(args, c.devices, c.gpus_per_node, c.num_processes, c.hbm_gb_per_gpu, "gpu")
    if plan:
        print(plan)
    try:
        if args.action == "plan":
            return 0
        if args.action == "sbatch":
            script = gpu.render_sbatch(c, sub, job_name=args.job_name, time=args.time,
                                       partition=args.partition, account=args.account)
            if args.dry_run:
                print(f"# would write {args.script}:")
                print(script)
            else:
                Path(args.script).parent.mkdir(parents=True, exist_ok=True)
                Path(args.script).write_text(script)
            return run_steps(gpu.sbatch_steps(args.script), dry_run=args.dry_run)
        built = {
            "start": lambda: gpu.ssh_start_steps(c, sub),
            "stop": lambda: gpu.ssh_stop_steps(c),
            "logs": lambda: gpu.ssh_logs_steps(c, args.process, args.lines),
        }[args.action]()
    except ValueError as err:
        print(f"launch gpu {args.action}: {err}", file=sys.stderr)
        return 2
    return run_steps(built, dry_run=args.dry_run)


def _check(args) -> int:
    from templar_jax.launch.check import main_check

    return main_check()
