"""Commands that run templar-jax on a Cloud TPU pod slice with `gcloud`.

Lifecycle: create (a queued resource, or a TPU VM directly) -> install the package on every
worker -> copy the run config and secret files -> start the same command on all workers
(`--worker=all`) -> logs -> stop -> delete. On TPU VMs `jax.distributed.initialize()` needs
no arguments (it reads the slice's metadata), so the entry point runs with
TEMPLAR_DISTRIBUTED=auto and no coordinator flags.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from templar_jax.launch.hardware import TpuSlice
from templar_jax.launch.shell import Step, env_prefix, remote_join, step

REMOTE_DIR = "$HOME/templar"          # expanded by the remote shell
REMOTE_VENV = f"{REMOTE_DIR}/venv"
REMOTE_PID = f"{REMOTE_DIR}/run.pid"
REMOTE_LOG = f"{REMOTE_DIR}/logs/run.log"
SOURCE_ARCHIVE = "dist/templar-jax-src.tar.gz"


@dataclass(frozen=True)
class TpuTarget:
    name: str
    zone: str
    slice: TpuSlice
    project: str | None = None
    queued: bool = True                 # queued-resources (recommended for large slices)
    spot: bool = False
    install: str = "archive"            # 'archive' (git archive of local HEAD) or 'git'
    git_url: str | None = None
    git_ref: str = "main"
    run_config: Path | None = None      # copied to $HOME/templar/run.yaml on every worker
    secrets: tuple[Path, ...] = field(default=())   # copied to $HOME/.templar/ (mode 600)

    def gcloud(self, *args: str) -> tuple[str, ...]:
        extra = (f"--zone={self.zone}",) + ((f"--project={self.project}",) if self.project else ())
        return ("gcloud", "compute", "tpus", *args, *extra)

    def ssh(self, command: str, worker: str = "all") -> tuple[str, ...]:
        return self.gcloud("tpu-vm", "ssh", self.name, f"--worker={worker}", f"--command={command}")

    def scp(self, local: str, remote: str, recurse: bool = False) -> tuple[str, ...]:
        flags = ("--recurse",) if recurse else ()
        return self.gcloud("tpu-vm", "scp", *flags, local, f"{self.name}:{remote}", "--worker=all")


def create_steps(t: TpuTarget) -> list[Step]:
    s = t.slice
    if t.queued:
        describe = shlex.join(t.gcloud("queued-resources", "describe", t.name, "--format=value(state.state)"))
        wait = f"until {describe} | grep -qx ACTIVE; do sleep 30; done"
        argv = t.gcloud(
            "queued-resources", "create", t.name, f"--node-id={t.name}",
            f"--accelerator-type={s.accelerator_type}", f"--runtime-version={s.runtime_version}",
            *(("--spot",) if t.spot else ()),
        )
        return [
            step(f"queue a {s.accelerator_type} slice ({s.chips} chips, {s.hosts} hosts)", *argv),
            step("wait until the queued resource is ACTIVE (polls every 30 s)", "bash", "-c", wait),
        ]
    argv = t.gcloud(
        "tpu-vm", "create", t.name, f"--accelerator-type={s.accelerator_type}",
        f"--version={s.runtime_version}", *(("--spot",) if t.spot else ()),
    )
    return [step(f"create a {s.accelerator_type} TPU VM ({s.chips} chips, {s.hosts} hosts)", *argv)]


def install_steps(t: TpuTarget) -> list[Step]:
    venv = remote_join(
        f'mkdir -p "{REMOTE_DIR}/logs"',
        f'python3 -m venv "{REMOTE_VENV}"',
        f'"{REMOTE_VENV}/bin/pip" install -q --upgrade pip',
    )
    if t.install == "git":
        if not t.git_url:
            raise ValueError("install 'git' needs a git URL (--git-url)")
        src = f"{REMOTE_DIR}/src"
        fetch = (f'(git -C "{src}" fetch -q origin {shlex.quote(t.git_ref)} && git -C "{src}" checkout -q FETCH_HEAD'
                 f' || git clone -q -b {shlex.quote(t.git_ref)} {shlex.quote(t.git_url)} "{src}")')
        return [step("clone the repo and install it (with jax[tpu] and the compiled payload decoder) on every worker",
                     *t.ssh(remote_join(venv, fetch, f'"{REMOTE_VENV}/bin/pip" install -q -e "{src}[tpu,fast-decode]"')))]
    if t.install != "archive":
        raise ValueError(f"unknown install method {t.install!r} (use 'archive' or 'git')")
    src = f"{REMOTE_DIR}/src"
    unpack = remote_join(
        f'rm -rf "{src}" && mkdir -p "{src}"',
        f'tar -xzf "{REMOTE_DIR}/templar-jax-src.tar.gz" -C "{src}"',
        f'"{REMOTE_VENV}/bin/pip" install -q -e "{src}[tpu,fast-decode]"',
    )
    return [
        step("make the local dist/ folder", "mkdir", "-p", str(Path(SOURCE_ARCHIVE).parent)),
        step("pack the committed source tree (HEAD) locally",
             "git", "archive", "--format=tar.gz", f"--output={SOURCE_ARCHIVE}", "HEAD"),
        step("make the install folder and venv on every worker", *t.ssh(venv)),
        step("copy the source archive to every worker", *t.scp(SOURCE_ARCHIVE, "templar/")),
        step("unpack and install (with jax[tpu] and the compiled payload decoder) on every worker", *t.ssh(unpack)),
    ]


def copy_steps(t: TpuTarget) -> list[Step]:
    steps = []
    if t.run_config is not None:
        steps.append(step("copy the run config", *t.scp(str(t.run_config), "templar/run.yaml")))
    if t.secrets:
        steps.append(step("make the secrets folder (mode 700)", *t.ssh('mkdir -p "$HOME/.templar" && chmod 700 "$HOME/.templar"')))
        for path in t.secrets:
            steps.append(step(f"copy secret file {path.name} (contents never printed)",
                              *t.scp(str(path), f".templar/{path.name}")))
        steps.append(step("restrict the secret files", *t.ssh('chmod 600 "$HOME"/.templar/*')))
    return steps


def remote_start_command(t: TpuTarget, subcommand: Sequence[str]) -> str:
    """Shell command each worker runs: the entry point in the background, pid and log on disk."""
    env = {"TEMPLAR_DISTRIBUTED": "auto" if t.slice.hosts > 1 else "off"}
    args = " ".join(shlex.quote(a) for a in subcommand)
    return remote_join(
        f'mkdir -p "{REMOTE_DIR}/logs"',
        f'cd "{REMOTE_DIR}"',
        f'{env_prefix(env)}nohup "{REMOTE_VENV}/bin/python" -m templar_jax.launch.entry -- {args}'
        f' > "{REMOTE_LOG}" 2>&1 < /dev/null & echo $! > "{REMOTE_PID}"',
    )


def start_steps(t: TpuTarget, subcommand: Sequence[str]) -> list[Step]:
    if not subcommand:
        raise ValueError("nothing to start: give the templar-jax subcommand after '--'")
    return [step(f"start `templar-jax {' '.join(subcommand)}` on all {t.slice.hosts} workers",
                 *t.ssh(remote_start_command(t, subcommand)))]


def stop_steps(t: TpuTarget) -> list[Step]:
    cmd = f'if [ -f "{REMOTE_PID}" ]; then kill "$(cat "{REMOTE_PID}")" 2>/dev/null; rm -f "{REMOTE_PID}"; fi'
    return [step("stop the process on every worker (by its recorded pid)", *t.ssh(cmd))]


def logs_steps(t: TpuTarget, worker: str = "0", lines: int = 100, follow: bool = False) -> list[Step]:
    flag = "-F" if follow else ""
    cmd = f'tail -n {int(lines)} {flag} "{REMOTE_LOG}"'.replace("  ", " ")
    return [step(f"show the log of worker {worker}", *t.ssh(cmd, worker=worker))]


def delete_steps(t: TpuTarget) -> list[Step]:
    if t.queued:
        return [step("delete the slice and its queued resource",
                     *t.gcloud("queued-resources", "delete", t.name, "--force", "--quiet"))]
    return [step("delete the TPU VM", *t.gcloud("tpu-vm", "delete", t.name, "--quiet"))]


def up_steps(t: TpuTarget, subcommand: Sequence[str]) -> list[Step]:
    """create + install + copy + start; the queued path needs the slice ACTIVE before install."""
    return create_steps(t) + install_steps(t) + copy_steps(t) + start_steps(t, subcommand)
