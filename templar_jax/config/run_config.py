"""A run config: one YAML file (`templar_jax/configs/runs/*.yaml`) describing one network run,
read into `RunConfig`, with `section.key=value` overrides, every key and type checked.

    cfg = load_run_config("demo", ["inner.lr=3e-4", "sparseloco.kernel.num_warps=4"])
    cfg.inner.steps, cfg.sparseloco.topk, cfg.peers.gather, cfg.run.init_seed

A key the dataclasses do not declare is rejected (`RunConfigError`), so no config can carry
a key that nothing reads. docs/run-config.md is generated from these dataclasses.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from templar_jax.config import typed
from templar_jax.config.errors import RunConfigError
from templar_jax.config.sections import (
    ChainSection, DataSection, InnerSection, MeshSection, MetricsSection, ModelSection, MultihostSection,
    PeersSection, RunSection, OffloadSection, SparseLocoSection, StorageSection, ValidatorSection,
)
from templar_jax.config.yaml_io import load_yaml
from templar_jax.package_data import RUN_CONFIGS_DIR


@dataclass(frozen=True)
class RunConfig:
    """One network run: clock, model, mesh, data, inner optimizer, SparseLoCo, peers,
    validator, storage and chain."""

    run: RunSection
    model: ModelSection
    mesh: MeshSection
    data: DataSection
    inner: InnerSection
    sparseloco: SparseLocoSection
    peers: PeersSection
    validator: ValidatorSection
    storage: StorageSection
    chain: ChainSection
    offload: OffloadSection = dataclasses.field(default_factory=OffloadSection)
    metrics: MetricsSection = dataclasses.field(default_factory=MetricsSection)
    multihost: MultihostSection = dataclasses.field(default_factory=MultihostSection)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "run config") -> "RunConfig":
        """Check and build from plain nested mappings (what the YAML file holds)."""
        return typed.read(cls, data, source=source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dicts and lists; `RunConfig.from_dict(c.to_dict()) == c`."""
        return typed.to_dict(self)

    def with_overrides(self, overrides: Iterable[str], source: str = "run config") -> "RunConfig":
        """A copy with `section.key=value` strings applied and checked."""
        return RunConfig.from_dict(apply_overrides(self.to_dict(), overrides), source=source)


def all_keys() -> list[str]:
    """Every dotted key a run config may hold, e.g. 'inner.lr', 'sparseloco.kernel.dots'."""
    return [f.key for f in typed.describe(RunConfig)]


def apply_overrides(raw: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of the plain mapping `raw` with `a.b[.c]=value` strings applied (value read as
    YAML, with YAML 1.2 floats: `3e-4` is a number). Checking is `RunConfig.from_dict`'s job."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        dotted, sep, text = item.partition("=")
        parts = [p.strip() for p in dotted.split(".")]
        if not sep or len(parts) < 2 or not all(parts):
            raise RunConfigError(f"override '{item}' is not of the form section.key=value")
        try:
            value = load_yaml(text)
        except yaml.YAMLError as err:
            raise RunConfigError(f"override '{item}': value is not valid YAML ({err})") from None
        node = out
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise RunConfigError(f"override '{item}': '{'.'.join(parts[:i + 1])}' is not a section")
            node = child
        node[parts[-1]] = value
    return out


def resolve_run_config_path(name_or_path: str | Path) -> Path:
    """`covenant-72b` -> the shipped covenant-72b.yaml; an existing path or a *.yaml is used as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return RUN_CONFIGS_DIR / f"{name_or_path}.yaml"


def available_run_configs() -> list[str]:
    return sorted(p.stem for p in RUN_CONFIGS_DIR.glob("*.yaml"))


def read_run_config_dict(name_or_path: str | Path) -> dict[str, Any]:
    """The file's plain mapping, unchecked (the typed errors still name the file)."""
    path = resolve_run_config_path(name_or_path)
    try:
        text = path.read_text()
    except OSError as err:
        raise RunConfigError(f"cannot read run config {path}: {err.strerror}"
                             f" (shipped: {', '.join(available_run_configs())})") from None
    try:
        raw = load_yaml(text) or {}
    except yaml.YAMLError as err:
        raise RunConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise RunConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    return raw


def load_run_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a shipped run config by name or a YAML file by path, apply overrides, check."""
    raw = read_run_config_dict(name_or_path)
    return RunConfig.from_dict(apply_overrides(raw, overrides),
                               source=str(resolve_run_config_path(name_or_path)))
