"""Two real processes (jax.distributed over 127.0.0.1, 4 CPU devices each, gloo collectives)
train on one global 8-device mesh and match the single-process 8-device run.

Run as a script, this file is the worker: `python test_multihost.py PORT PROCESS_ID`.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MESH = "data=2,fsdp=4"
GLOBAL_BATCH, SEQ = 8, 17
STEPS = 2


def _model_and_opt():
    from templar_jax.model import load_model_config
    from templar_jax.train import TrainConfig, make_inner_optimizer

    cfg = load_model_config("tiny", dtype="float32", vocab_size=256, d_model=64, d_ff=128, head_dim=16)
    return cfg, make_inner_optimizer(TrainConfig(lr=1e-2, warmup_steps=2))


def _global_batches():
    from templar_jax.train import markov_batches

    data = markov_batches(256, GLOBAL_BATCH, SEQ, seed=11)
    return [next(data) for _ in range(STEPS)]


def run_steps(mesh, feed) -> dict:
    """STEPS sharded train steps; `feed(global_np_batch)` builds the global jax.Array."""
    import jax
    import jax.numpy as jnp

    from templar_jax.model import init_params
    from templar_jax.train import init_opt_state, make_train_step

    cfg, opt = _model_and_opt()
    params = init_params(cfg, 0, mesh)
    state = init_opt_state(opt, params, cfg, mesh)
    step = make_train_step(cfg, opt, mesh=mesh)
    losses = []
    for batch in _global_batches():
        params, state, m = step(params, state, feed(batch))
        losses.append(float(m["loss"]))
    checksum = jax.jit(lambda p: sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(p)))(params)
    return {"losses": losses, "checksum": float(checksum)}


def _worker(port: int, process_id: int) -> None:
    import jax

    jax.config.update("jax_num_cpu_devices", 4)
    from templar_jax.distributed import global_batch, initialize, process_slice
    from templar_jax.model.sharding import make_mesh

    info = initialize(f"127.0.0.1:{port}", 2, process_id)
    assert (info.num_processes, jax.device_count(), jax.local_device_count()) == (2, 8, 4)
    mesh = make_mesh(MESH)
    rows = process_slice(mesh, GLOBAL_BATCH)
    result = run_steps(mesh, lambda b: global_batch(b[rows], mesh, GLOBAL_BATCH))
    result.update(process_id=info.process_id, rows=[rows.start, rows.stop])
    print("RESULT " + json.dumps(result), flush=True)


def test_resolve_settings_from_flags_env_and_cluster_hints():
    from templar_jax.distributed import DistributedConfigError, resolve_settings

    assert resolve_settings(env={})[3] == "single"
    assert resolve_settings("h:1", 2, 1, env={}) == ("h:1", 2, 1, "explicit")
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
    assert resolve_settings(env=env) == ("10.0.0.1:1234", 4, 3, "explicit")
    assert resolve_settings(process_id=0, env=env) == ("10.0.0.1:1234", 4, 0, "explicit")  # flag wins
    assert resolve_settings(env={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "16"})[3] == "auto"
    assert resolve_settings(env={"SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"})[3] == "single"
    assert resolve_settings(env={"TPU_WORKER_HOSTNAMES": "w0,w1"})[3] == "auto"
    with pytest.raises(DistributedConfigError, match="together"):
        resolve_settings("h:1", env={})
    with pytest.raises(DistributedConfigError, match="not in"):
        resolve_settings("h:1", 2, 2, env={})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_single_process():
    import jax

    from templar_jax.model.sharding import make_mesh
    from templar_jax.train import batch_sharding

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",) and not k.startswith("JAX_")}
    env["JAX_PLATFORMS"] = "cpu"
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(port), str(i)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    # the single-process reference runs meanwhile on this process's 8 fake devices
    mesh = make_mesh(MESH)
    expected = run_steps(mesh, lambda b: jax.device_put(b, batch_sharding(mesh)))
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-4000:]
        results.append(json.loads(out.split("RESULT ", 1)[1].splitlines()[0]))
    assert sorted(r["process_id"] for r in results) == [0, 1]
    assert sorted(tuple(r["rows"]) for r in results) == [(0, 4), (4, 8)]
    for r in results:
        np.testing.assert_allclose(r["losses"], expected["losses"], rtol=1e-5)
        np.testing.assert_allclose(r["checksum"], expected["checksum"], rtol=1e-5)
    assert expected["losses"][1] < expected["losses"][0]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    _worker(int(sys.argv[1]), int(sys.argv[2]))
