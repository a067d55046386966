"""Per-neuron event logs: one JSON object per line in `run_dir/events/{role}-{uid}.jsonl`.

Neurons append; the demo's monitor and report read. Appends of one short line are atomic enough
on a local filesystem (O_APPEND), and a reader skips a torn last line.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

# Something that also receives each event record after it is written (metrics, W&B).
EventSink = Callable[[dict], None]


def events_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "events"


class EventLog:
    """Appends events for one neuron, then hands each record to the subscribed sinks."""

    def __init__(self, run_dir: str | os.PathLike, role: str, uid: int):
        self.path = events_dir(run_dir) / f"{role}-{uid}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.role, self.uid = role, uid
        self.sinks: list[EventSink] = []

    def subscribe(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    def emit(self, event: str, **fields: Any) -> None:
        record = {"t": time.time(), "role": self.role, "uid": self.uid, "event": event, **fields}
        line = json.dumps(record, default=_jsonable, separators=(",", ":")) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
        plain = json.loads(line) if self.sinks else None  # what the log's readers see: plain JSON values
        for sink in self.sinks:
            try:
                sink(plain)
            except Exception as err:  # a broken exporter never stops the window loop
                log.warning("event sink %r failed on %s: %s: %s", sink, event, type(err).__name__, err)


def _jsonable(x: Any) -> Any:
    # numpy / jax scalars and arrays
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def read_events(path: str | os.PathLike) -> Iterator[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue  # torn last line while the writer is mid-append
    except FileNotFoundError:
        return


def read_all_events(run_dir: str | os.PathLike) -> list[dict]:
    out: list[dict] = []
    d = events_dir(run_dir)
    if d.is_dir():
        for p in sorted(d.glob("*.jsonl")):
            out.extend(read_events(p))
    out.sort(key=lambda r: r.get("t", 0.0))
    return out
