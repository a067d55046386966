"""What a real run measured, from its event logs (runs/<id>/events/miner-*.jsonl): the miners'
compute share and median phase times, the figures the simulator is validated against."""

from __future__ import annotations

import dataclasses
import json
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


@dataclasses.dataclass(frozen=True)
class RecordedSpan:
    """The windows a recorded run's miners trained in (null rounds first) and, where the log
    names them, how many payloads were applied in each (`gathered`, the contributors)."""
    first: int
    windows: int
    null_rounds: int
    applied: tuple[int, ...]  # empty when the events do not carry `gathered`


def recorded_span(events_dir: str | Path, applied_file: str | Path | None = None) -> RecordedSpan:
    """From the miners' `window` events: the first to the last trained window. The applied
    counts come from the events' `gathered` lists, else from `applied_file` (JSON
    {"source": ..., "applied": {window: count}}, for logs trimmed without them)."""
    trained: dict[int, dict] = {}
    for path in sorted(Path(events_dir).glob("miner-*.jsonl")):
        for ev in read_events(path):
            if ev.get("event") == "window" and ev.get("inner_steps"):
                trained.setdefault(int(ev["window"]), ev)
    if not trained:
        raise ValueError(f"no trained miner windows in {events_dir}")
    first, last = min(trained), max(trained)
    span = range(first, last + 1)
    counts: dict[int, int] = {}
    if all("gathered" in trained.get(w, {}) for w in span):
        counts = {w: len(trained[w]["gathered"]) for w in span}
    elif applied_file is not None and Path(applied_file).exists():
        data = json.loads(Path(applied_file).read_text())
        if not data.get("source"):
            raise ValueError(f"{applied_file}: the applied counts must name their source")
        counts = {int(w): int(n) for w, n in data["applied"].items()}
        missing = [w for w in span if w not in counts]
        if missing:
            raise ValueError(f"{applied_file}: no applied count for windows {missing}")
    nulls = sum(1 for w in span if trained.get(w, {}).get("null_round"))
    return RecordedSpan(first, len(span), nulls, tuple(counts[w] for w in span) if counts else ())


def measured_summary(rows: list[dict]) -> dict:
    """Compute share as the demo report counts it, and median compute / communication seconds."""
    if not rows:
        raise ValueError("no trained miner windows in the event log")
    c = sum(r["compute_s"] for r in rows)
    m = sum(r["comm_s"] for r in rows)
    return {"windows": len(rows), "utilization": c / (c + m),
            "median_s": {"compute_s": median(r["compute_s"] for r in rows),
                         "comm_s": median(r["comm_s"] for r in rows)},
            "median_inner_steps": median(r["inner_steps"] for r in rows),
            # overlapped miners (sparseloco.overlap): inner steps of W+1 before W's outer step landed
            "median_landed_after_steps": median(landed) if (landed := [
                r["landed_after_steps"] for r in rows if r.get("landed_after_steps") is not None]) else None}


def compare(predicted: dict, measured: dict) -> dict:
    """Predicted vs measured: utilization in points, median phase times as relative error."""
    out = {"utilization_points": 100 * (predicted["utilization"] - measured["utilization"])}
    for k, v in measured["median_s"].items():
        out[f"{k}_rel"] = (predicted["median_s"][k] - v) / v if v else 0.0
    return out
