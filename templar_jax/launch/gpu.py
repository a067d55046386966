"""Commands that run templar-jax on 8-GPU nodes: a SLURM batch script, or plain ssh.

Both start one process per node (it drives all 8 GPUs) or one per GPU
(CUDA_VISIBLE_DEVICES picks it). Process 0 runs on the first node, which is also the
coordinator: JAX_COORDINATOR_ADDRESS=<first node>:<port>. The per-process entry point
(`python -m templar_jax.launch.entry`) reads JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES
and JAX_PROCESS_ID and calls jax.distributed.initialize with them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Sequence

from templar_jax.launch.gpu_env import ENV_NOTES, SITE_VARIABLES, gpu_env
from templar_jax.launch.hardware import GpuCluster
from templar_jax.launch.shell import Step, env_prefix, remote_join, step


@dataclass(frozen=True)
class ProcessSlot:
    host: str
    process_id: int
    local_gpu: int | None     # None: the process sees every GPU of its node


def process_slots(c: GpuCluster) -> list[ProcessSlot]:
    if not c.hosts:
        raise ValueError(f"cluster {c.name}: the ssh launcher needs 'hosts' (first one coordinates)")
    if c.process_per == "node":
        return [ProcessSlot(h, i, None) for i, h in enumerate(c.hosts)]
    return [
        ProcessSlot(h, n * c.gpus_per_node + g, g)
        for n, h in enumerate(c.hosts)
        for g in range(c.gpus_per_node)
    ]


def coordinator_address(c: GpuCluster) -> str:
    return f"{c.hosts[0]}:{c.port}"


def _entry(venv: str, subcommand: Sequence[str]) -> str:
    args = " ".join(shlex.quote(a) for a in subcommand)
    return f"{venv}/bin/python -m templar_jax.launch.entry -- {args}"


def _remote_path(p: str) -> str:
    """`~/x` -> `"$HOME"/x` so the remote shell expands it even inside other quoting."""
    return '"$HOME"' + p[1:] if p.startswith("~") else shlex.quote(p)


def ssh_argv(host: str, command: str) -> tuple[str, ...]:
    return ("ssh", "-o", "BatchMode=yes", host, command)


def ssh_start_steps(c: GpuCluster, subcommand: Sequence[str]) -> list[Step]:
    if not subcommand:
        raise ValueError("nothing to start: give the templar-jax subcommand after '--'")
    slots = process_slots(c)
    workdir, venv = _remote_path(c.workdir), _remote_path(c.venv)
    steps = []
    for s in slots:
        env = {
            "TEMPLAR_DISTRIBUTED": "env",
            "JAX_COORDINATOR_ADDRESS": coordinator_address(c),
            "JAX_NUM_PROCESSES": str(len(slots)),
            "JAX_PROCESS_ID": str(s.process_id),
            **({"CUDA_VISIBLE_DEVICES": str(s.local_gpu)} if s.local_gpu is not None else {}),
            **gpu_env(c.env, c.extra_xla_flags),
        }
        run = (f'XLA_FLAGS="${{XLA_FLAGS:-}} {env.pop("XLA_FLAGS")}" {env_prefix(env)}nohup {_entry(venv, subcommand)}'
               f" > logs/run-{s.process_id}.log 2>&1 < /dev/null & echo $! > run-{s.process_id}.pid")
        cmd = remote_join(f"cd {workdir}", "mkdir -p logs", run)
        where = f"GPU {s.local_gpu} of {s.host}" if s.local_gpu is not None else f"all GPUs of {s.host}"
        steps.append(step(f"start process {s.process_id}/{len(slots)} on {where}", *ssh_argv(s.host, cmd)))
    return steps


def ssh_stop_steps(c: GpuCluster) -> list[Step]:
    workdir = _remote_path(c.workdir)
    cmd = remote_join(f"cd {workdir}", 'for f in run-*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; rm -f "$f"; done; true')
    return [step(f"stop the processes on {h} (by recorded pid)", *ssh_argv(h, cmd)) for h in c.hosts]


def ssh_logs_steps(c: GpuCluster, process_id: int = 0, lines: int = 100) -> list[Step]:
    slot = process_slots(c)[process_id]
    cmd = f"tail -n {int(lines)} {_remote_path(c.workdir)}/logs/run-{process_id}.log"
    return [step(f"show the log of process {process_id} ({slot.host})", *ssh_argv(slot.host, cmd))]


def render_sbatch(
    c: GpuCluster,
    subcommand: Sequence[str],
    *,
    job_name: str = "templar-jax",
    time: str = "24:00:00",
    partition: str | None = None,
    account: str | None = None,
) -> str:
    """A complete sbatch script: allocation, env (each variable explained), coordinator, srun."""
    if not subcommand:
        raise ValueError("nothing to run: give the templar-jax subcommand after '--'")
    tasks_per_node = 1 if c.process_per == "node" else c.gpus_per_node
    env = gpu_env(c.env, c.extra_xla_flags)
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={c.nodes}",
        f"#SBATCH --ntasks-per-node={tasks_per_node}",
        f"#SBATCH --gpus-per-node={c.gpus_per_node}",
        "#SBATCH --exclusive",
        f"#SBATCH --time={time}",
        "#SBATCH --output=logs/%x-%j.out",
        *([f"#SBATCH --partition={partition}"] if partition else []),
        *([f"#SBATCH --account={account}"] if account else []),
        f"# rendered by `templar-jax launch gpu sbatch --cluster {c.name}`",
        "set -euo pipefail",
        f"cd {_remote_path(c.workdir)}",
        "mkdir -p logs",
        "",
    ]
    for name, value in env.items():
        lines.append(f"# {name}: {ENV_NOTES.get(name, 'set by the cluster file')}")
        if name == "XLA_FLAGS":
            lines.append(f'export XLA_FLAGS="${{XLA_FLAGS:-}} {value}"')
        else:
            lines.append(f"export {name}={shlex.quote(value)}")
    for name in SITE_VARIABLES:
        if name not in env:
            lines.append(f"# {name}: {ENV_NOTES[name]}")
            lines.append(f"# export {name}=...")
    per_task = ["export JAX_PROCESS_ID=$SLURM_PROCID"]
    if c.process_per == "gpu":
        per_task.append("export CUDA_VISIBLE_DEVICES=$SLURM_LOCALID")
    per_task.append(f"exec {_entry(_remote_path(c.venv), subcommand)}")
    lines += [
        "",
        "# Coordinator: process 0 on the first node of the allocation. (awk reads all input;",
        "# `head -n 1` could end the pipe early and, under pipefail, fail the job with SIGPIPE.)",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | awk \'NR == 1\')',
        f'export JAX_COORDINATOR_ADDRESS="$head_node:{c.port}"',
        f"export JAX_NUM_PROCESSES={c.nodes * tasks_per_node}",
        "export TEMPLAR_DISTRIBUTED=env",
        f"srun --kill-on-bad-exit=1 bash -c {shlex.quote('; '.join(per_task))}",
        "",
    ]
    return "\n".join(lines)


def sbatch_steps(script_path: str) -> list[Step]:
    return [step("submit the batch job", "sbatch", script_path)]
