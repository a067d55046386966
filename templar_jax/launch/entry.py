"""Per-process entry point: `python -m templar_jax.launch.entry -- <templar-jax args>`.

Reads the launcher's environment, initializes jax.distributed, then runs the subcommand in
this process. TEMPLAR_DISTRIBUTED selects how:
  env   JAX_COORDINATOR_ADDRESS + JAX_NUM_PROCESSES + JAX_PROCESS_ID (ssh / SLURM launchers;
        under SLURM, SLURM_PROCID / SLURM_NTASKS fill the last two when unset)
  auto  jax's own cluster detection (Cloud TPU metadata, SLURM, Open MPI, Kubernetes)
  off   single process, no initialization
Unset: `env` when JAX_COORDINATOR_ADDRESS is set, else `off`. JAX_LOCAL_DEVICE_IDS is honoured
by jax itself. On CPU (JAX_PLATFORMS=cpu) cross-process collectives use gloo.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Mapping, Sequence

log = logging.getLogger(__name__)

MODES = ("env", "auto", "off")


class LaunchEnvError(ValueError):
    """The launcher environment is incomplete or inconsistent (names the variable)."""


@dataclass(frozen=True)
class LaunchEnv:
    mode: str
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


def _int_var(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        raw = environ.get(name)
        if raw is not None and raw != "":
            try:
                return int(raw)
            except ValueError:
                raise LaunchEnvError(f"{name}={raw!r} is not an integer") from None
    return None


def read_launch_env(environ: Mapping[str, str] = os.environ) -> LaunchEnv:
    coordinator = environ.get("JAX_COORDINATOR_ADDRESS") or None
    mode = environ.get("TEMPLAR_DISTRIBUTED") or ("env" if coordinator else "off")
    if mode not in MODES:
        raise LaunchEnvError(f"TEMPLAR_DISTRIBUTED={mode!r}; use one of {MODES}")
    if mode != "env":
        return LaunchEnv(mode)
    num = _int_var(environ, "JAX_NUM_PROCESSES", "SLURM_NTASKS")
    pid = _int_var(environ, "JAX_PROCESS_ID", "SLURM_PROCID")
    missing = [n for n, v in (("JAX_COORDINATOR_ADDRESS", coordinator), ("JAX_NUM_PROCESSES", num),
                              ("JAX_PROCESS_ID", pid)) if v is None]
    if missing:
        raise LaunchEnvError(f"TEMPLAR_DISTRIBUTED=env but {', '.join(missing)} unset")
    if ":" not in coordinator:
        raise LaunchEnvError(f"JAX_COORDINATOR_ADDRESS={coordinator!r} lacks ':port'")
    if not (num >= 1 and 0 <= pid < num):
        raise LaunchEnvError(f"JAX_PROCESS_ID={pid} not in [0, JAX_NUM_PROCESSES={num})")
    return LaunchEnv(mode, coordinator, num, pid)


def initialize(env: LaunchEnv) -> None:
    """Initialize jax.distributed as `env` says (no-op for `off`)."""
    if env.mode == "off":
        return
    import jax

    if os.environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if env.mode == "auto":
        jax.distributed.initialize()
    else:
        jax.distributed.initialize(
            coordinator_address=env.coordinator_address,
            num_processes=env.num_processes,
            process_id=env.process_id,
        )
    log.info("process %d/%d up, %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--":
        args = args[1:]
    if not args:
        print("usage: python -m templar_jax.launch.entry -- <templar-jax subcommand> [args]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        env = read_launch_env()
    except LaunchEnvError as err:
        print(f"launch environment: {err}", file=sys.stderr)
        return 2
    initialize(env)
    from templar_jax.cli import main as cli_main

    try:
        code = cli_main(args)
    except BaseException as err:
        from templar_jax.multihost import report_failure

        report_failure(err)  # the other processes end now, not after the stall timeout
        raise  # no shutdown: its barrier would wait for a peer that may be dead (multihost.end_after_failure)
    if env.mode != "off":
        import jax

        jax.distributed.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
