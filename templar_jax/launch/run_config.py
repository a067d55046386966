"""Run configs (`configs/runs/*.yaml`): the schema, loading, and `section.key=value` overrides.

One YAML file describes one network run: its clock, model, mesh, data, inner optimizer,
SparseLoCo, peer selection, validator, storage and chain. The schema below is the single
list of keys; a key not in it is rejected (`RunConfigError`) so no config can carry a key
that nothing reads. `docs/run-config.md` documents exactly these keys (a test keeps the two
in step). Secrets never live here: storage and chain keys name *files* or env vars.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNS_DIR = REPO_ROOT / "configs" / "runs"


class RunConfigError(ValueError):
    """A run config (file or override) is malformed; the message names the key and reason."""


@dataclass(frozen=True)
class KeySpec:
    types: tuple[type, ...]
    doc: str
    required: bool = True


_NUM = (int, float)

# section -> key -> spec. Keep minimal: every key here must be read by some component.
SCHEMA: dict[str, dict[str, KeySpec]] = {
    "run": {
        "version": KeySpec((str,), "run version string; partitions every object key (SPEC sec. 3)"),
        "blocks_per_window": KeySpec((int,), "chain blocks per window (window = block // this)"),
        "block_time_s": KeySpec(_NUM, "expected seconds per block (LocalChain tick, ETA logs)"),
        "null_rounds": KeySpec((int,), "windows after start_window that send zeros and reset EF"),
        "resume_interval_windows": KeySpec(
            (int,), "windows between a miner's local resume checkpoints (0 or absent: none)", required=False
        ),
    },
    "model": {
        "preset": KeySpec((str,), "name of configs/models/{preset}.yaml (or a path)"),
        "overrides": KeySpec((dict,), "ModelConfig fields replacing the preset's", required=False),
    },
    "mesh": {
        "spec": KeySpec((str, dict), "'auto' (derive from plan) or e.g. 'fsdp=8' / {fsdp: 8, tensor: 1}"),
    },
    "data": {
        "path": KeySpec((str,), "folder or bucket URL holding train_*.npy + sample_ids_*.npy shards"),
        "seq_len": KeySpec((int,), "tokens per sequence"),
    },
    "inner": {
        "steps": KeySpec((int,), "inner AdamW steps per window (H)"),
        "micro_batch": KeySpec((int,), "sequences per device-step (gradient accumulation unit)"),
        "batch": KeySpec((int,), "sequences per inner step actually trained"),
        "target_batch": KeySpec((int,), "sequences per inner step in the assigned pool (SPEC sec. 6)"),
        "lr": KeySpec(_NUM, "peak AdamW learning rate"),
        "betas": KeySpec((list,), "AdamW (beta1, beta2)"),
        "eps": KeySpec(_NUM, "AdamW epsilon"),
        "weight_decay": KeySpec(_NUM, "AdamW decoupled weight decay"),
        "warmup_steps": KeySpec((int,), "linear warmup length in inner steps"),
        "cosine_steps": KeySpec((int,), "cosine decay length in inner steps"),
        "final_lr_fraction": KeySpec(_NUM, "lr at the end of the cosine, as a fraction of peak"),
        "grad_clip": KeySpec(_NUM, "global gradient-norm clip"),
    },
    "sparseloco": {
        "topk": KeySpec((int,), "values kept per chunk"),
        "chunk": KeySpec((int,), "chunk side (tiles are chunk x chunk for 2-D tensors)"),
        "error_decay": KeySpec(_NUM, "error-feedback decay beta"),
        "outer_lr": KeySpec(_NUM, "outer SGD step alpha"),
        "aggregation": KeySpec((str,), "'median_clip_mean' (SPEC 2.4, default) or 'sum' (paper 1/R sum)"),
        "index_coding": KeySpec((str,), "wire index code: 'elias-fano' or '12bit'"),
        "impl": KeySpec(
            (str,), "'auto' (default: the Pallas compression kernel on GPUs, pure JAX elsewhere), 'jax' or 'pallas'",
            required=False,
        ),
    },
    "peers": {
        "gather": KeySpec((int,), "peers aggregated per window"),
        "reserve": KeySpec((int,), "reserve peers replacing missing gather peers, in order"),
        "refresh_windows": KeySpec((int,), "windows between peer-list publications"),
        "upload_window_s": KeySpec(_NUM, "accepted upload span after the first block of W+1"),
        "gather_timeout_s": KeySpec(_NUM, "per-peer download timeout"),
    },
    "validator": {
        "eval_uids": KeySpec((int,), "uids evaluated per window"),
        "eval_sequences": KeySpec((int,), "sequences per loss evaluation (own and random data)"),
        "weights_interval_windows": KeySpec((int,), "windows between set_weights calls"),
        "burn_fraction": KeySpec(_NUM, "share of weight burned to burn_uid"),
        "burn_uid": KeySpec((int,), "uid receiving the burned share"),
        "checkpoint_interval_windows": KeySpec((int,), "windows between published checkpoints"),
    },
    "storage": {
        "bucket": KeySpec((str,), "my bucket URL: gs://BUCKET, s3://BUCKET (also R2), file://PATH"),
        "endpoint": KeySpec(
            (str,), "s3:// only: endpoint URL (R2: https://ACCOUNT_ID.r2.cloudflarestorage.com)", required=False
        ),
        "write_credentials_file": KeySpec(
            (str,), "local JSON file with write credentials (never published)", required=False
        ),
        "read_credentials_file": KeySpec(
            (str,), "local JSON file with the read credentials committed on chain", required=False
        ),
    },
    "chain": {
        "backend": KeySpec((str,), "'local' (embedded SQLite) or 'bittensor'"),
        "network": KeySpec((str,), "local: SQLite path; bittensor: 'finney', 'test' or ws:// URL"),
        "netuid": KeySpec((int,), "subnet id (3 for Templar)"),
        "wallet": KeySpec((str,), "bittensor wallet (coldkey) name", required=False),
        "hotkey": KeySpec((str,), "bittensor hotkey name", required=False),
    },
}


def all_keys() -> list[str]:
    """Every dotted key of the schema, e.g. 'inner.lr'."""
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def validate(cfg: Mapping[str, Any], source: str = "run config") -> None:
    """Raise `RunConfigError` unless `cfg` holds exactly schema keys of the right types."""
    if not isinstance(cfg, Mapping):
        raise RunConfigError(f"{source}: top level must be a mapping, got {type(cfg).__name__}")
    for section, body in cfg.items():
        if section not in SCHEMA:
            raise RunConfigError(f"{source}: unknown section '{section}' (known: {sorted(SCHEMA)})")
        if not isinstance(body, Mapping):
            raise RunConfigError(f"{source}: section '{section}' must be a mapping")
        for key, value in body.items():
            spec = SCHEMA[section].get(key)
            if spec is None:
                raise RunConfigError(f"{source}: unknown key '{section}.{key}'")
            if isinstance(value, bool) and bool not in spec.types:
                raise RunConfigError(f"{source}: '{section}.{key}' must be {_names(spec)}, got bool")
            if not isinstance(value, spec.types):
                raise RunConfigError(
                    f"{source}: '{section}.{key}' must be {_names(spec)}, got {type(value).__name__}"
                )
    for section, keys in SCHEMA.items():
        for key, spec in keys.items():
            if spec.required and key not in cfg.get(section, {}):
                raise RunConfigError(f"{source}: missing required key '{section}.{key}'")


def _names(spec: KeySpec) -> str:
    return " or ".join(t.__name__ for t in spec.types)


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of `cfg` with `section.key=value` strings applied (value parsed as YAML)."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        dotted, sep, raw = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not sep or not dot or not section or not key:
            raise RunConfigError(f"override '{item}' is not of the form section.key=value")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise RunConfigError(f"override '{item}': value is not valid YAML ({err})") from None
        if isinstance(value, str):
            value = _number_or_text(value)
        out.setdefault(section, {})[key] = value
    return out


def _number_or_text(text: str) -> Any:
    """YAML 1.1 reads '3e-4' (no dot) as a string; on the command line it means a number."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def resolve_path(name_or_path: str | Path) -> Path:
    """`covenant-72b` -> configs/runs/covenant-72b.yaml; an existing path is used as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return RUNS_DIR / f"{name_or_path}.yaml"


def load_run_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Load, override and validate a run config; returns plain nested dicts."""
    path = resolve_path(name_or_path)
    try:
        text = path.read_text()
    except OSError as err:
        raise RunConfigError(f"cannot read run config {path}: {err.strerror}") from None
    try:
        cfg = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise RunConfigError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(cfg, dict):
        raise RunConfigError(f"{path}: top level must be a mapping")
    cfg = apply_overrides(cfg, overrides)
    validate(cfg, source=str(path))
    return cfg
