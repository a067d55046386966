"""Entry point: launcher env parsing, and two real processes on 127.0.0.1 (gloo) agreeing."""

import json
import re
import os
import socket
import subprocess
import sys

import pytest

from templar_jax.launch.entry import LaunchEnvError, read_launch_env


def test_env_mode_reads_jax_variables_and_falls_back_to_slurm():
    env = read_launch_env({"JAX_COORDINATOR_ADDRESS": "h0:1234", "JAX_NUM_PROCESSES": "4",
                           "JAX_PROCESS_ID": "3"})
    assert (env.mode, env.coordinator_address, env.num_processes, env.process_id) == ("env", "h0:1234", 4, 3)
    slurm = read_launch_env({"TEMPLAR_DISTRIBUTED": "env", "JAX_COORDINATOR_ADDRESS": "h0:1",
                             "SLURM_NTASKS": "16", "SLURM_PROCID": "9"})
    assert (slurm.num_processes, slurm.process_id) == (16, 9)
    assert read_launch_env({}).mode == "off"
    assert read_launch_env({"TEMPLAR_DISTRIBUTED": "auto"}).mode == "auto"


@pytest.mark.parametrize("environ,reason", [
    ({"TEMPLAR_DISTRIBUTED": "env"}, "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID unset"),
    ({"JAX_COORDINATOR_ADDRESS": "h0", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}, "lacks ':port'"),
    ({"JAX_COORDINATOR_ADDRESS": "h0:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "not in \\[0"),
    ({"JAX_COORDINATOR_ADDRESS": "h0:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "not an integer"),
    ({"TEMPLAR_DISTRIBUTED": "mpi"}, "use one of"),
])
def test_bad_launch_env_is_a_typed_error(environ, reason):
    with pytest.raises(LaunchEnvError, match=reason):
        read_launch_env(environ)


def test_two_processes_on_localhost_run_launch_check_and_agree():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen([sys.executable, "-m", "templar_jax.launch.entry", "--", "launch", "check"],
                              env={**base, "JAX_PROCESS_ID": str(i)}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=180)
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    reports = [json.loads(m) for out in outs for m in re.findall(r"launch-check (\{[^}]*\})", out)]
    assert [r["process"] for r in reports] == [0, 1]
    assert all(r["processes"] == 2 and r["devices"] == 8 and r["local_devices"] == 4 for r in reports)
    assert reports[0]["result"] == reports[1]["result"] and all(r["matches_host"] for r in reports)


def test_entry_rejects_bad_env_before_starting(monkeypatch, capsys):
    from templar_jax.launch import entry

    monkeypatch.setenv("TEMPLAR_DISTRIBUTED", "env")
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert entry.main(["--", "launch", "check"]) == 2
    assert "unset" in capsys.readouterr().err
