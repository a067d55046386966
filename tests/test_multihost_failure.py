"""A collective that fails because a peer died must not leave the survivor hanging in
jax.distributed's shutdown barrier: it ends within the stall timeout, naming the dead peer
(real jax.distributed, 2 local processes running all-gathers; process 1 is SIGKILLed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

STALL_S = 8.0
ROOT = Path(__file__).resolve().parents[1]


def _worker(pid: int, port: int) -> None:
    import jax
    import numpy as np

    jax.config.update("jax_num_cpu_devices", 2)
    from jax.experimental import multihost_utils

    from templar_jax.distributed import initialize
    from templar_jax.multihost import start

    initialize(f"127.0.0.1:{port}", 2, pid)
    start(heartbeat_s=1.0, stall_timeout_s=STALL_S)
    print(f"p{pid} up", flush=True)
    for i in range(10**9):  # until a peer dies: the all-gather then raises (gloo: connection closed)
        multihost_utils.process_allgather(np.arange(4) + i)


def test_a_failed_collective_ends_the_survivor_naming_the_dead_peer():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS" and not k.startswith("JAX_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, __file__, str(i), str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env) for i in (0, 1)]
    try:
        assert procs[1].stdout.readline().startswith("p1 up")  # joined; all-gathers are running
        time.sleep(1.0)
        procs[1].kill()
        t0 = time.time()
        out, _ = procs[0].communicate(timeout=STALL_S + 40)
        took = time.time() - t0
    finally:
        for p in procs:
            p.kill()
    assert procs[0].returncode != 0
    assert f"process 1 on {socket.gethostname()} (phase " in out, out[-3000:]
    assert took < STALL_S + 20, took


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker(int(sys.argv[1]), int(sys.argv[2]))
