"""What a real run measured, from its event logs (runs/<id>/events/miner-*.jsonl): the miners'
compute share and median phase times, the figures the simulator is validated against."""

from __future__ import annotations

from pathlib import Path
from statistics import median

from templar_jax.events import read_events


def miner_windows(events_dir: str | Path) -> list[dict]:
    """The miners' `window` events that trained (null rounds and the compile window left out)."""
    rows = []
    for path in sorted(Path(events_dir).glob("miner-*.jsonl")):
        for ev in read_events(path):
            if ev.get("event") != "window" or not ev.get("inner_steps") or ev.get("null_round"):
                continue
            rows.append(ev)
    return rows


def measured_summary(rows: list[dict]) -> dict:
    """Compute share as the demo report counts it, and median compute / communication seconds."""
    if not rows:
        raise ValueError("no trained miner windows in the event log")
    c = sum(r["compute_s"] for r in rows)
    m = sum(r["comm_s"] for r in rows)
    return {"windows": len(rows), "utilization": c / (c + m),
            "median_s": {"compute_s": median(r["compute_s"] for r in rows),
                         "comm_s": median(r["comm_s"] for r in rows)},
            "median_inner_steps": median(r["inner_steps"] for r in rows)}


def compare(predicted: dict, measured: dict) -> dict:
    """Predicted vs measured: utilization in points, median phase times as relative error."""
    out = {"utilization_points": 100 * (predicted["utilization"] - measured["utilization"])}
    for k, v in measured["median_s"].items():
        out[f"{k}_rel"] = (predicted["median_s"][k] - v) / v if v else 0.0
    return out
