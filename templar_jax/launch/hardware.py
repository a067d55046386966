"""Hardware descriptions the launchers read: TPU slices and GPU clusters (small YAML files).

`launch/tpu/slices/{name}.yaml` and `launch/gpu/clusters/{name}.yaml` in the repo; a path to
any YAML file works too. Both reduce to the numbers the mesh planner needs: devices, hosts,
devices per host and HBM per device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]  # launch/ is part of the source checkout, not the package
SLICES_DIR = REPO_ROOT / "launch" / "tpu" / "slices"
CLUSTERS_DIR = REPO_ROOT / "launch" / "gpu" / "clusters"


class HardwareConfigError(ValueError):
    """A slice or cluster YAML is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class TpuSlice:
    name: str
    accelerator_type: str   # gcloud --accelerator-type, e.g. v5p-64, v5litepod-16
    runtime_version: str    # gcloud --runtime-version / --version
    chips: int
    hosts: int              # TPU VM workers; jax runs one process per host
    chips_per_host: int
    hbm_gb_per_chip: float

    @property
    def devices(self) -> int:
        return self.chips

    @property
    def devices_per_host(self) -> int:
        return self.chips_per_host


@dataclass(frozen=True)
class GpuCluster:
    name: str
    nodes: int
    gpus_per_node: int
    hbm_gb_per_gpu: float
    process_per: str = "node"          # 'node' or 'gpu'
    hosts: tuple[str, ...] = ()        # ssh launcher; SLURM allocates its own
    port: int = 12355
    workdir: str = "~/templar-jax"
    venv: str = "~/templar-jax/.venv"
    env: dict[str, str] = field(default_factory=dict)
    extra_xla_flags: tuple[str, ...] = ()

    @property
    def devices(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def devices_per_host(self) -> int:
        return self.gpus_per_node

    @property
    def num_processes(self) -> int:
        return self.nodes if self.process_per == "node" else self.devices


def _read_yaml(name_or_path: str | Path, folder: Path, what: str) -> tuple[str, dict[str, Any]]:
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") or path.exists()):
        path = folder / f"{name_or_path}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except OSError:
        known = sorted(p.stem for p in folder.glob("*.yaml"))
        raise HardwareConfigError(f"no {what} '{name_or_path}' (known: {known})") from None
    except yaml.YAMLError as err:
        raise HardwareConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise HardwareConfigError(f"{path}: top level must be a mapping")
    return path.stem, data


def _take(data: dict[str, Any], key: str, typ: type | tuple, where: str) -> Any:
    if key not in data:
        raise HardwareConfigError(f"{where}: missing key '{key}'")
    value = data.pop(key)
    if isinstance(value, bool) or not isinstance(value, typ):
        raise HardwareConfigError(f"{where}: '{key}' has type {type(value).__name__}")
    return value


def load_tpu_slice(name_or_path: str | Path) -> TpuSlice:
    name, data = _read_yaml(name_or_path, SLICES_DIR, "TPU slice")
    where = f"slice {name}"
    s = TpuSlice(
        name=name,
        accelerator_type=_take(data, "accelerator_type", str, where),
        runtime_version=_take(data, "runtime_version", str, where),
        chips=_take(data, "chips", int, where),
        hosts=_take(data, "hosts", int, where),
        chips_per_host=_take(data, "chips_per_host", int, where),
        hbm_gb_per_chip=float(_take(data, "hbm_gb_per_chip", (int, float), where)),
    )
    if data:
        raise HardwareConfigError(f"{where}: unknown keys {sorted(data)}")
    if s.hosts * s.chips_per_host != s.chips or min(s.chips, s.hosts) < 1:
        raise HardwareConfigError(
            f"{where}: hosts {s.hosts} x chips_per_host {s.chips_per_host} != chips {s.chips}"
        )
    return s


def load_gpu_cluster(name_or_path: str | Path) -> GpuCluster:
    name, data = _read_yaml(name_or_path, CLUSTERS_DIR, "GPU cluster")
    where = f"cluster {name}"
    hosts = data.pop("hosts", []) or []
    env = data.pop("env", {}) or {}
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise HardwareConfigError(f"{where}: 'hosts' must be a list of host names")
    if not isinstance(env, dict):
        raise HardwareConfigError(f"{where}: 'env' must be a mapping")
    c = GpuCluster(
        name=name,
        nodes=_take(data, "nodes", int, where),
        gpus_per_node=_take(data, "gpus_per_node", int, where),
        hbm_gb_per_gpu=float(_take(data, "hbm_gb_per_gpu", (int, float), where)),
        process_per=data.pop("process_per", "node"),
        hosts=tuple(hosts),
        port=int(data.pop("port", 12355)),
        workdir=str(data.pop("workdir", "~/templar-jax")),
        venv=str(data.pop("venv", "~/templar-jax/.venv")),
        env={str(k): str(v) for k, v in env.items()},
        extra_xla_flags=tuple(str(f) for f in (data.pop("extra_xla_flags", []) or [])),
    )
    if data:
        raise HardwareConfigError(f"{where}: unknown keys {sorted(data)}")
    if c.process_per not in ("node", "gpu"):
        raise HardwareConfigError(f"{where}: process_per must be 'node' or 'gpu', not {c.process_per!r}")
    if c.hosts and len(c.hosts) != c.nodes:
        raise HardwareConfigError(f"{where}: {len(c.hosts)} hosts listed but nodes = {c.nodes}")
    return c
