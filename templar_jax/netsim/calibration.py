"""Stage costs the simulator runs on: each figure carries its value, unit, source and device.

A calibration file (YAML or JSON) maps figure names to `{value, unit, source, device}`; it is
written by `templar-jax simulate --calibrate` (this project's own benches on this machine) or by
hand (then `source` says where the number comes from). Unknown names and missing fields are
errors that name the key, so a typo never silently becomes a default.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

# name -> unit; the simulator reads exactly these
FIGURES: dict[str, str] = {
    "train_tokens_per_s": "tokens/s per peer (whole peer, all its devices)",
    "train_step_overhead_s": "s per inner step (data, host sync, dispatch)",
    "compress_s_per_param": "s/param (error feedback + top-k + quantize)",
    "encode_s_per_param": "s/param (wire encode)",
    "decode_s_per_param": "s/param per payload (wire decode + checks)",
    "aggregate_s_per_param": "s/param per peer aggregated (dequantize, clip, scatter-mean)",
    "apply_s": "s per window (outer step + resume checkpoint + bookkeeping)",
    "aggregate_first_use_s": "s per process, the first outer step at a new padded peer count "
                             "(trace + load from the persistent XLA cache)",
    "rebase_s_per_param": "s/param on the training thread when an overlapped outer step lands (sparseloco.rebase)",
    "eval_s_per_token": "s/token (validator forward pass)",
    "store_request_s": "s per object-store request (latency)",
    "host_tokens_per_s": "tokens/s of one host saturated with training processes (0 = one peer per host)",
}


class CalibrationError(ValueError):
    """A calibration file or figure that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Figure:
    value: float
    unit: str
    source: str
    device: str


@dataclasses.dataclass(frozen=True)
class StageCosts:
    figures: dict[str, Figure]

    def __post_init__(self):
        missing = sorted(set(FIGURES) - set(self.figures))
        if missing:
            raise CalibrationError(f"calibration lacks figures {missing}")
        unknown = sorted(set(self.figures) - set(FIGURES))
        if unknown:
            raise CalibrationError(f"unknown calibration figures {unknown}; known: {sorted(FIGURES)}")
        for name, fig in self.figures.items():
            if not fig.value >= 0:
                raise CalibrationError(f"{name}: value {fig.value} must be >= 0")
        if self.figures["train_tokens_per_s"].value <= 0:
            raise CalibrationError("train_tokens_per_s: must be > 0")

    def __getitem__(self, name: str) -> float:
        return self.figures[name].value

    def host_slowdown(self, processes: int) -> float:
        """How much slower each of `processes` busy processes sharing one host runs than one alone:
        they split the host's measured throughput (1 when peers do not share hosts)."""
        host = self["host_tokens_per_s"]
        return max(1.0, processes * self["train_tokens_per_s"] / host) if host > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {k: dataclasses.asdict(f) for k, f in sorted(self.figures.items())}


def costs_from_dict(data: dict[str, Any]) -> StageCosts:
    if not isinstance(data, dict):
        raise CalibrationError(f"calibration must be a mapping, got {type(data).__name__}")
    figs = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise CalibrationError(f"{name}: expected {{value, source, device}}, got {entry!r}")
        for key in ("value", "source", "device"):
            if key not in entry:
                raise CalibrationError(f"{name}: missing {key!r}")
        try:
            value = float(entry["value"])
        except (TypeError, ValueError):
            raise CalibrationError(f"{name}: value {entry['value']!r} is not a number") from None
        figs[name] = Figure(value, str(entry.get("unit", FIGURES.get(name, ""))), str(entry["source"]),
                            str(entry["device"]))
    return StageCosts(figs)


def load_costs(path: str | Path) -> StageCosts:
    text = Path(path).read_text(encoding="utf-8")
    data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    return costs_from_dict(data)


def save_costs(costs: StageCosts, path: str | Path) -> None:
    data = costs.to_dict()
    text = json.dumps(data, indent=1) if str(path).endswith(".json") else yaml.safe_dump(data, sort_keys=True)
    Path(path).write_text(text, encoding="utf-8")
