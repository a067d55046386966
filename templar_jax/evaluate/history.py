"""The evaluator's JSONL history: one line per published checkpoint it has dealt with.

The file is also the evaluator's state: on a restart the windows already in it are not
evaluated again. Each line is written whole and fsynced before the next checkpoint starts; a
last line cut short by a crash (no newline) is dropped on load and that checkpoint is
evaluated again, never skipped.

    {"window": 12, "global_step": 5, "version": "demo", "evaluated_at": 1765000000.0,
     "seconds": 3.2, "heldout": {"loss": ..., "bits_per_byte": ..., ...}, "lm_eval": {...}}
    {"window": 13, "error": "checkpoints/demo/13/params/...: size/sha256 does not match the manifest"}
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from templar_jax.evaluate.errors import EvalError

log = logging.getLogger(__name__)


def _plain(x: Any) -> Any:
    """JSON-ready: numpy scalars as floats, NaN/inf as None (JSON has neither)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    return float(x) if math.isfinite(float(x)) else None


class EvalHistory:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        if lines and lines[-1]:  # no final newline: the write of that line never finished
            log.warning("%s: dropping an unfinished last line (%d bytes)", self.path, len(lines[-1]))
            raw = raw[: len(raw) - len(lines[-1])]
            os.truncate(self.path, len(raw))  # in place: a crash now cannot lose the lines before it
        for n, line in enumerate(raw.split(b"\n")[:-1], 1):
            try:
                record = json.loads(line)
                int(record["window"])
            except (ValueError, KeyError, TypeError) as err:
                raise EvalError(f"{self.path}:{n}: not an evaluation record ({err})") from None
            self.records.append(record)

    @property
    def windows(self) -> set[int]:
        """Windows with a record (evaluated, or failed for good)."""
        return {int(r["window"]) for r in self.records}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(_plain(record), allow_nan=False, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.append(json.loads(line))
