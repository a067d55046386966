"""TPU launcher dry runs: the gcloud commands, the remote start command, and the mesh plan."""

import shlex
import shutil
import subprocess

import pytest

from templar_jax.cli import main
from templar_jax.launch import tpu
from templar_jax.launch.hardware import HardwareConfigError, load_tpu_slice
from templar_jax.launch.shell import run_steps


def dry(capsys, *argv):
    rc = main(["launch", "tpu", argv[0], "--dry-run", *argv[1:]])
    out = capsys.readouterr().out
    return rc, out


def commands(out):
    return [shlex.split(line) for line in out.splitlines() if line and not line.startswith("#")]


def test_up_on_v5p_64_queues_installs_copies_and_starts_on_all_workers(capsys, tmp_path):
    secret = tmp_path / "write-credentials.json"
    secret.write_text('{"secret": "never-printed"}')
    rc, out = dry(capsys, "up", "--name", "tj", "--zone", "us-east5-a", "--slice", "v5p-64",
                  "--project", "p1", "--run-config", "covenant-72b", "--secret", str(secret),
                  "--", "miner", "--config", "run.yaml")
    assert rc == 0
    assert "never-printed" not in out
    assert "# plan: mesh data=1,fsdp=32,tensor=1 | 8 processes x 4 devices" in out
    cmds = commands(out)
    create = cmds[0]
    assert create[:5] == ["gcloud", "compute", "tpus", "queued-resources", "create"]
    assert {"--accelerator-type=v5p-64", "--runtime-version=v2-alpha-tpuv5", "--node-id=tj",
            "--zone=us-east5-a", "--project=p1"} <= set(create)
    ssh = [c for c in cmds if c[3:5] == ["tpu-vm", "ssh"]]
    scp = [c for c in cmds if c[3:5] == ["tpu-vm", "scp"]]
    assert ssh and scp and all("--worker=all" in c for c in ssh + scp)
    assert any(str(secret) in c and "tj:.templar/write-credentials.json" in c for c in scp)
    assert any(c[-3].endswith("covenant-72b.yaml") and c[-2:] == ["--worker=all", "--zone=us-east5-a"]
               or "tj:templar/run.yaml" in c for c in scp)
    start = ssh[-1]
    remote = next(a for a in start if a.startswith("--command="))
    assert "TEMPLAR_DISTRIBUTED=auto" in remote
    assert "-m templar_jax.launch.entry -- miner --config run.yaml" in remote
    assert "JAX_COORDINATOR_ADDRESS" not in remote  # TPU: jax auto-detects the slice


def test_single_host_slice_runs_without_distributed_init_and_direct_create(capsys):
    rc, out = dry(capsys, "up", "--name", "small", "--zone", "z", "--slice", "v5e-8", "--direct",
                  "--install", "git", "--git-url", "https://example.org/templar-jax.git", "--",
                  "launch", "check")
    assert rc == 0
    cmds = commands(out)
    assert cmds[0][3:6] == ["tpu-vm", "create", "small"]
    assert "--version=v2-alpha-tpuv5-lite" in cmds[0] and "--accelerator-type=v5litepod-8" in cmds[0]
    assert "git clone" in out and "TEMPLAR_DISTRIBUTED=off" in out


def test_stop_logs_delete(capsys):
    base = ["--name", "tj", "--zone", "z", "--slice", "v4-32"]
    _, out = dry(capsys, "stop", *base)
    assert "kill" in out and "run.pid" in out and "--worker=all" in out
    _, out = dry(capsys, "logs", *base, "--worker", "3", "--lines", "20")
    assert "--worker=3" in out and "tail -n 20" in out
    _, out = dry(capsys, "delete", *base)
    assert commands(out)[0][3:6] == ["queued-resources", "delete", "tj"]


def test_start_without_subcommand_is_an_error(capsys):
    rc, _ = dry(capsys, "start", "--name", "tj", "--zone", "z", "--slice", "v4-32")
    assert rc == 2


def test_dry_run_executes_nothing():
    t = tpu.TpuTarget(name="x", zone="z", slice=load_tpu_slice("v4-32"))
    called = []
    rc = run_steps(tpu.up_steps(t, ["launch", "check"]), dry_run=True, echo=lambda s: None,
                   runner=lambda argv: called.append(argv))
    assert rc == 0 and called == []


def test_execution_stops_at_first_failure():
    t = tpu.TpuTarget(name="x", zone="z", slice=load_tpu_slice("v4-32"))
    calls = []

    def runner(argv):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1 if len(calls) == 2 else 0)

    assert run_steps(tpu.up_steps(t, ["launch", "check"]), dry_run=False, runner=runner) == 1
    assert len(calls) == 2


def test_slice_files_are_consistent_and_bad_ones_rejected(tmp_path):
    for name in ("v5p-64", "v5e-8", "v5e-16", "v4-32"):
        s = load_tpu_slice(name)
        assert s.hosts * s.chips_per_host == s.chips
    bad = tmp_path / "bad.yaml"
    bad.write_text("accelerator_type: v4-32\nruntime_version: x\nchips: 16\nhosts: 3\n"
                   "chips_per_host: 4\nhbm_gb_per_chip: 32\n")
    with pytest.raises(HardwareConfigError, match="hosts 3 x chips_per_host 4 != chips 16"):
        load_tpu_slice(bad)
    with pytest.raises(HardwareConfigError, match="no TPU slice 'v9-9'"):
        load_tpu_slice("v9-9")


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="gcloud CLI not installed")
def test_generated_gcloud_flags_exist_in_the_installed_gcloud():
    t = tpu.TpuTarget(name="x", zone="z", slice=load_tpu_slice("v5p-64"), spot=True)
    t_direct = tpu.TpuTarget(name="x", zone="z", slice=load_tpu_slice("v5p-64"), queued=False, spot=True)
    steps = tpu.up_steps(t, ["launch", "check"]) + tpu.create_steps(t_direct) + tpu.delete_steps(t)
    by_group: dict[tuple, set] = {}
    for s in steps:
        if s.argv[0] != "gcloud":
            continue
        flags = {a.split("=")[0] for a in s.argv if a.startswith("--")}
        by_group.setdefault(s.argv[:5], set()).update(flags)
    for group, flags in by_group.items():
        help_text = subprocess.run([*group, "--help"], capture_output=True, text=True, timeout=120,
                                   env={"PAGER": "cat", "PATH": "/usr/bin:/bin", "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
                                        "HOME": "/tmp"}).stdout
        plain = help_text.replace("\x1b[1m", "").replace("\x1b[0m", "").replace("\x1b[4m", "")
        missing = {f for f in flags if f not in plain}
        assert not missing, f"{' '.join(group)} does not know {missing}"
