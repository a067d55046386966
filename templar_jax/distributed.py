"""Multi-host start-up (jax.distributed) and global batch assembly.

`initialize(...)` resolves, in order: explicit arguments (CLI flags), the env vars
JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID, then cluster auto-detection
(SLURM, TPU pod slices, ... : jax.distributed.initialize() with no arguments) when such an
environment is detected. With none of these it is a single-process run and does nothing.

On CPU, cross-process collectives need the gloo implementation; it is switched on here (it
must be set before any backend is created, so call initialize() before touching devices).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def _cluster_detected(env) -> bool:
    """A multi-process cluster launch that jax.distributed.initialize() can auto-configure."""
    def count(key: str) -> int:
        try:
            return int(env.get(key, "1"))
        except ValueError:
            return 1

    if "SLURM_JOB_ID" in env and count("SLURM_NTASKS") > 1:
        return True
    if "," in env.get("TPU_WORKER_HOSTNAMES", "") or "MEGASCALE_COORDINATOR_ADDRESS" in env:
        return True
    return count("OMPI_COMM_WORLD_SIZE") > 1


class DistributedConfigError(ValueError):
    """Incomplete or inconsistent multi-process settings."""


@dataclass(frozen=True)
class ProcessInfo:
    process_id: int
    num_processes: int
    coordinator: str | None
    mode: str  # "single", "explicit", "auto"


def resolve_settings(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    env: dict | None = None,
) -> tuple[str | None, int | None, int | None, str]:
    """Merge flags with env vars; returns (coordinator, num_processes, process_id, mode)."""
    env = os.environ if env is None else env
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    given = [coordinator is not None, num_processes is not None, process_id is not None]
    if all(given):
        if not 0 <= process_id < num_processes:
            raise DistributedConfigError(f"process id {process_id} not in [0, {num_processes})")
        return coordinator, num_processes, process_id, "explicit"
    if any(given):
        if num_processes == 1 and coordinator is None:
            return None, 1, 0, "single"
        raise DistributedConfigError(
            "multi-process needs coordinator address, process count and process id together "
            f"(got coordinator={coordinator!r}, num_processes={num_processes}, process_id={process_id})"
        )
    if _cluster_detected(env):
        return None, None, None, "auto"
    return None, None, None, "single"


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids=None,
) -> ProcessInfo:
    """Start jax.distributed when the settings ask for more than one process."""
    coordinator, num_processes, process_id, mode = resolve_settings(coordinator, num_processes, process_id)
    if mode == "single":
        return ProcessInfo(0, 1, None, mode)
    import jax

    # only affects the CPU backend; harmless on GPU/TPU, required for CPU collectives
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if mode == "explicit":
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            local_device_ids=local_device_ids,
        )
    else:
        jax.distributed.initialize()  # SLURM / TPU / MPI auto-detection inside JAX
    info = ProcessInfo(jax.process_index(), jax.process_count(), coordinator, mode)
    log.info(
        "jax.distributed up: process %d/%d, %d local / %d global devices",
        info.process_id, info.num_processes, jax.local_device_count(), jax.device_count(),
    )
    return info


def global_batch(local_BxL: np.ndarray, mesh, global_batch_size: int | None = None):
    """Assemble the global [B, L] batch from each process's slice of rows (batch over data x fsdp).

    Every process passes its own rows (B / process_count of them, in process order).
    """
    import jax

    from templar_jax.train.step import batch_sharding

    b_local, seq_len = local_BxL.shape
    global_b = global_batch_size or b_local * jax.process_count()
    return jax.make_array_from_process_local_data(
        batch_sharding(mesh), np.asarray(local_BxL), (global_b, seq_len)
    )


def process_slice(mesh, global_batch_size: int) -> slice:
    """Rows of the global batch that this process must feed (from the batch sharding).

    The rows held by this process's devices under the (data, fsdp) batch sharding; they form
    one contiguous block for meshes built by make_mesh.
    """
    from templar_jax.train.step import batch_sharding

    index_map = batch_sharding(mesh).addressable_devices_indices_map((global_batch_size, 1))
    starts = sorted({(idx[0].start or 0, idx[0].stop or global_batch_size) for idx in index_map.values()})
    lo, hi = starts[0][0], starts[-1][1]
    covered = sum(b - a for a, b in starts)
    if covered != hi - lo:
        raise DistributedConfigError(f"this process's batch rows are not contiguous: {starts}")
    return slice(lo, hi)
