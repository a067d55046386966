"""`templar-jax launch check`: prove every process and device of a launch can compute together.

Builds one global array sharded over all devices of all processes (each process fills only
its own shards), reduces over the sharded axis (a cross-process collective) and prints a
one-line report. Every process must print the same `result`; a wrong wiring (two separate
jobs, a missing host, a device not seen) changes the device count or hangs at initialize.
"""

from __future__ import annotations

import json
import sys


def run_check(rows_per_device: int = 16, cols: int = 32) -> dict:
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    n_dev = jax.device_count()
    rows = rows_per_device * n_dev
    mesh = Mesh(np.array(jax.devices()), ("fsdp",))
    data_RxC = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols) / (rows * cols)
    x_RxC = jax.make_array_from_callback(
        (rows, cols), NamedSharding(mesh, P("fsdp", None)), lambda idx: data_RxC[idx]
    )
    gram = jax.jit(lambda a: (a.T @ a).sum(), out_shardings=NamedSharding(mesh, P()))(x_RxC)
    result = float(gram)
    expected = float((data_RxC.astype(np.float64).T @ data_RxC.astype(np.float64)).sum())
    return {
        "process": jax.process_index(),
        "processes": jax.process_count(),
        "local_devices": jax.local_device_count(),
        "devices": n_dev,
        "platform": jax.devices()[0].platform,
        "result": round(result, 3),
        "matches_host": abs(result - expected) <= 1e-4 * abs(expected),
    }


def main_check() -> int:
    report = run_check()
    # One write per report: processes sharing a pipe (srun, tests) must not split each other's line.
    sys.stdout.write("launch-check " + json.dumps(report, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0 if report["matches_host"] else 1
