"""GPU launchers: ssh dry runs, the sbatch script (rendered and *executed* against fake
scontrol/srun on this machine, two CPU processes), and the XLA flags against real jaxlib."""

import json
import re
import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

from templar_jax.cli import main
from templar_jax.launch.gpu import process_slots, render_sbatch
from templar_jax.launch.gpu_env import DEFAULT_XLA_FLAGS, OPTIONAL_XLA_FLAGS
from templar_jax.launch.hardware import GpuCluster, load_gpu_cluster

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ssh_start_one_process_per_gpu_on_two_nodes(capsys):
    rc = main(["launch", "gpu", "start", "--dry-run", "--cluster", "h100-2x8", "--process-per", "gpu",
               "--run-config", "1b", "--", "miner", "--config", "configs/runs/1b.yaml"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "# plan: mesh data=1,fsdp=16,tensor=1 | 16 processes x 1 devices" in out
    remotes = [shlex.split(line)[-1] for line in out.splitlines() if line.startswith("ssh ")]
    assert len(remotes) == 16
    envs = [dict(tok.split("=", 1) for tok in shlex.split(r) if tok.startswith(("JAX_", "CUDA_")))
            for r in remotes]
    assert sorted(int(e["JAX_PROCESS_ID"]) for e in envs) == list(range(16))
    assert {e["JAX_COORDINATOR_ADDRESS"] for e in envs} == {"gpu-node-0:12355"}
    assert {e["JAX_NUM_PROCESSES"] for e in envs} == {"16"}
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == [str(g) for g in range(8)] * 2
    hosts = [line.split()[3] for line in out.splitlines() if line.startswith("ssh ")]
    assert hosts == ["gpu-node-0"] * 8 + ["gpu-node-1"] * 8


def test_ssh_one_process_per_node_sees_all_gpus(capsys):
    rc = main(["launch", "gpu", "start", "--dry-run", "--cluster", "h100-2x8", "--hosts", "a,b,c",
               "--", "launch", "check"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("ssh ")]
    assert rc == 0 and len(lines) == 3
    assert "CUDA_VISIBLE_DEVICES" not in out and "JAX_NUM_PROCESSES=3" in out
    assert "JAX_COORDINATOR_ADDRESS=a:12355" in out


def test_sbatch_script_header_and_env():
    c = load_gpu_cluster("h100-2x8")
    script = render_sbatch(c, ["miner"], partition="gpu", account="acct")
    for expected in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=8",
                     "#SBATCH --partition=gpu", "#SBATCH --account=acct",
                     'scontrol show hostnames "$SLURM_JOB_NODELIST"', "export JAX_NUM_PROCESSES=2",
                     "--xla_gpu_enable_latency_hiding_scheduler=true",
                     "export XLA_PYTHON_CLIENT_MEM_FRACTION=0.90", "# export NCCL_SOCKET_IFNAME=..."):
        assert expected in script
    per_gpu = render_sbatch(GpuCluster("x", nodes=2, gpus_per_node=8, hbm_gb_per_gpu=80, process_per="gpu",
                                       env={"NCCL_SOCKET_IFNAME": "eth0"}), ["miner"])
    assert "--ntasks-per-node=8" in per_gpu and "JAX_NUM_PROCESSES=16" in per_gpu
    assert "CUDA_VISIBLE_DEVICES=$SLURM_LOCALID" in per_gpu
    assert "export NCCL_SOCKET_IFNAME=eth0" in per_gpu


def test_process_slots_need_hosts():
    import pytest

    with pytest.raises(ValueError, match="needs 'hosts'"):
        process_slots(GpuCluster("x", nodes=1, gpus_per_node=8, hbm_gb_per_gpu=80))


def test_emitted_xla_flags_are_accepted_by_jaxlib():
    """An unknown name in XLA_FLAGS aborts jax at start-up; a made-up one must fail here too."""
    code = "import jax; jax.numpy.zeros(2).block_until_ready()"
    flags = [f.replace("=N", "=1048576") for f in (*DEFAULT_XLA_FLAGS, *OPTIONAL_XLA_FLAGS)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    ok = subprocess.run([sys.executable, "-c", code], env={**env, "XLA_FLAGS": " ".join(flags)},
                        capture_output=True, timeout=120)
    assert ok.returncode == 0, ok.stderr.decode()[-2000:]
    bad = subprocess.run([sys.executable, "-c", code], env={**env, "XLA_FLAGS": "--xla_gpu_made_up_flag=true"},
                         capture_output=True, timeout=120)
    assert bad.returncode != 0


FAKE_SRUN = """#!/bin/bash
# Stand-in for srun: run the task command once per task on this machine with SLURM_PROCID/LOCALID.
while [[ "$1" == --* ]]; do shift; done
pids=()
for ((i = 0; i < FAKE_NTASKS; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$((i % FAKE_TASKS_PER_NODE)) "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
"""


def test_rendered_sbatch_script_runs_two_processes_that_agree(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in (("srun", FAKE_SRUN), ("scontrol", "#!/bin/bash\necho localhost\nfor i in $(seq 5000); do echo other$i; done\n")):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(stat.S_IRWXU)
    cluster = GpuCluster("local", nodes=2, gpus_per_node=4, hbm_gb_per_gpu=1, process_per="node",
                         port=free_port(), workdir=str(tmp_path), venv=sys.prefix)
    script = tmp_path / "job.sbatch"
    script.write_text(render_sbatch(cluster, ["launch", "check"]))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "localhost,other",
           "FAKE_NTASKS": "2", "FAKE_TASKS_PER_NODE": "1", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reports = [json.loads(m) for m in re.findall(r"launch-check (\{[^}]*\})", proc.stdout)]
    assert sorted(r["process"] for r in reports) == [0, 1]
    assert {(r["processes"], r["devices"], r["local_devices"]) for r in reports} == {(2, 8, 4)}
    assert len({r["result"] for r in reports}) == 1 and all(r["matches_host"] for r in reports)


def test_plan_that_does_not_fit_is_reported_not_raised(capsys):
    rc = main(["launch", "gpu", "plan", "--cluster", "h200-1x8", "--run-config", "covenant-72b"])
    assert rc == 2
    assert "MeshPlanError: model does not fit 8 devices of 141 GB" in capsys.readouterr().err
