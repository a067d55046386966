"""Typed view of a run config (`configs/runs/*.yaml`, schema in `templar_jax.launch.run_config`)
for the neurons, plus the per-process identity (hotkey, run folder, behaviour)."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from templar_jax.launch.run_config import RunConfigError, load_run_config

AGGREGATION_RULES = {"median_clip_mean": "median_clip", "sum": "mean"}


@dataclass(frozen=True)
class NeuronSettings:
    version: str
    blocks_per_window: int
    block_time_s: float
    null_rounds: int
    model_preset: str
    model_overrides: Mapping[str, Any]
    mesh_spec: Any
    data_path: str
    seq_len: int
    inner: Mapping[str, Any]
    topk: int
    chunk: int
    error_decay: float
    outer_lr: float
    aggregation_rule: str  # rule name of templar_jax.sparseloco.aggregate
    index_coding: str
    gather_peers: int
    reserve_peers: int
    refresh_windows: int
    upload_window_s: float
    gather_timeout_s: float
    eval_uids: int
    eval_sequences: int
    weights_interval_windows: int
    burn_fraction: float
    burn_uid: int
    checkpoint_interval_windows: int
    bucket_url: str
    chain_backend: str
    chain_network: str
    netuid: int
    wallet: str | None = None
    hotkey_name: str | None = None
    bucket_endpoint: str | None = None
    write_credentials_file: str | None = None
    read_credentials_file: str | None = None
    resume_interval_windows: int = 0  # 0: miners keep no local resume checkpoint
    sparseloco_impl: str = "auto"  # "jax", "pallas" or "auto" (templar_jax/sparseloco/impl.py)

    @property
    def init_seed(self) -> int:
        """Every peer of a run starts from the same params: the seed derives from the version."""
        return int.from_bytes(hashlib.blake2b(self.version.encode(), digest_size=4).digest(), "little")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "NeuronSettings":
        rule = cfg["sparseloco"]["aggregation"]
        if rule not in AGGREGATION_RULES:
            raise RunConfigError(
                f"sparseloco.aggregation must be one of {sorted(AGGREGATION_RULES)}, got {rule!r}")
        coding = cfg["sparseloco"]["index_coding"]
        return cls(
            version=cfg["run"]["version"],
            blocks_per_window=cfg["run"]["blocks_per_window"],
            block_time_s=float(cfg["run"]["block_time_s"]),
            null_rounds=cfg["run"]["null_rounds"],
            model_preset=cfg["model"]["preset"],
            model_overrides=dict(cfg["model"].get("overrides") or {}),
            mesh_spec=cfg["mesh"]["spec"],
            data_path=cfg["data"]["path"],
            seq_len=cfg["data"]["seq_len"],
            inner=dict(cfg["inner"]),
            topk=cfg["sparseloco"]["topk"],
            chunk=cfg["sparseloco"]["chunk"],
            error_decay=float(cfg["sparseloco"]["error_decay"]),
            outer_lr=float(cfg["sparseloco"]["outer_lr"]),
            aggregation_rule=AGGREGATION_RULES[rule],
            index_coding="twelve-bit" if coding in ("12bit", "twelve-bit") else coding,
            gather_peers=cfg["peers"]["gather"],
            reserve_peers=cfg["peers"]["reserve"],
            refresh_windows=cfg["peers"]["refresh_windows"],
            upload_window_s=float(cfg["peers"]["upload_window_s"]),
            gather_timeout_s=float(cfg["peers"]["gather_timeout_s"]),
            eval_uids=cfg["validator"]["eval_uids"],
            eval_sequences=cfg["validator"]["eval_sequences"],
            weights_interval_windows=cfg["validator"]["weights_interval_windows"],
            burn_fraction=float(cfg["validator"]["burn_fraction"]),
            burn_uid=cfg["validator"]["burn_uid"],
            checkpoint_interval_windows=cfg["validator"]["checkpoint_interval_windows"],
            bucket_url=cfg["storage"]["bucket"],
            chain_backend=cfg["chain"]["backend"],
            chain_network=cfg["chain"]["network"],
            netuid=cfg["chain"]["netuid"],
            wallet=cfg["chain"].get("wallet"),
            hotkey_name=cfg["chain"].get("hotkey"),
            bucket_endpoint=cfg["storage"].get("endpoint"),
            write_credentials_file=cfg["storage"].get("write_credentials_file"),
            read_credentials_file=cfg["storage"].get("read_credentials_file"),
            resume_interval_windows=int(cfg["run"].get("resume_interval_windows", 0)),
            sparseloco_impl=cfg["sparseloco"].get("impl", "auto"),
        )

    def replace(self, **changes: Any) -> "NeuronSettings":
        return dataclasses.replace(self, **changes)


def load_settings(name_or_path: str | Path, overrides: Iterable[str] = ()) -> NeuronSettings:
    return NeuronSettings.from_config(load_run_config(name_or_path, overrides))
