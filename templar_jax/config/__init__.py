"""The run config: typed frozen dataclasses that are the schema, the settings object and the
source of docs/run-config.md at once (see run_config.py)."""

from templar_jax.config.errors import RunConfigError
from templar_jax.config.run_config import (
    RunConfig, all_keys, apply_overrides, available_run_configs, load_run_config,
    read_run_config_dict, resolve_run_config_path,
)
from templar_jax.config.sections import (
    ChainSection, DataSection, InnerSection, MeshSection, MetricsSection, ModelSection, MultihostSection, OffloadSection,
    PeersSection, RunSection, SparseLocoSection, StorageSection, ValidatorSection,
)

__all__ = [
    "ChainSection", "DataSection", "InnerSection", "MeshSection", "MetricsSection", "ModelSection", "MultihostSection", "OffloadSection", "PeersSection",
    "RunConfig", "RunConfigError", "RunSection", "SparseLocoSection", "StorageSection",
    "ValidatorSection", "all_keys", "apply_overrides", "available_run_configs", "load_run_config",
    "read_run_config_dict", "resolve_run_config_path",
]
