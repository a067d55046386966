"""What the dashboard shows, as one JSON-able dict built from a run folder's event logs (and the
metrics endpoints neurons record there): nothing that neurons do not already publish.

    state = dashboard_state("runs/demo")
    state["peers"][0]   # {"uid": 1, "behavior": "honest", "status": "ok", "weight": 0.49, ...}
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

from templar_jax.demo.report import collect, latest_scores
from templar_jax.events import events_dir, read_all_events
from templar_jax.metrics.server import endpoints_dir, read_endpoints

RECENT_WINDOWS = 40  # windows listed in the phase table and the compute/communication chart


def _series(by_window: dict[int, float]) -> list[list[float]]:
    return [[w, by_window[w]] for w in sorted(by_window)]


def _neurons(events: list[dict], endpoints: dict[str, str]) -> list[dict]:
    """One row per neuron process: role, uid, running or stopped, its last window and event time."""
    rows: dict[str, dict] = {}
    for ev in events:
        key = f"{ev.get('role')}-{ev.get('uid')}"
        row = rows.setdefault(key, {"key": key, "role": ev.get("role"), "uid": ev.get("uid"), "state": "starting",
                                    "last_window": None, "last_t": None, "metrics_url": endpoints.get(key)})
        row["last_t"] = ev.get("t")
        if ev.get("window") is not None:
            row["last_window"] = ev["window"]
        row["state"] = {"started": "running", "stopped": "stopped", "error": "error"}.get(ev.get("event"),
                                                                                           row["state"])
    return sorted(rows.values(), key=lambda r: (r["role"] != "validator", r["uid"]))


def _windows(events: list[dict]) -> list[dict]:
    """Per window: when it was reported, the miners' mean compute and communication seconds and
    mean seconds per logged phase (train, compress, upload, ...), the validator's gather seconds,
    how many peers it aggregated and the peers' outcomes."""
    acc: dict[int, dict] = defaultdict(lambda: {"compute": [], "comm": [], "gather_s": None, "aggregated": None,
                                                "outcomes": {}, "t": None, "phases": defaultdict(list)})
    for ev in events:
        if ev.get("window") is None or ev.get("event") not in ("window", "scores", "phase"):
            continue
        if ev["event"] == "phase":
            acc[int(ev["window"])]["phases"][str(ev.get("phase"))].append(float(ev["end"]) - float(ev["start"]))
            continue
        row = acc[int(ev["window"])]
        row["t"] = ev["t"] if row["t"] is None else min(row["t"], ev["t"])
        if ev["event"] == "window" and ev.get("inner_steps"):
            row["compute"].append(float(ev.get("compute_s") or 0.0))
            row["comm"].append(float(ev.get("comm_s") or 0.0))
        elif ev["event"] == "scores":
            row["gather_s"] = ev.get("gather_s")
            row["aggregated"] = len(ev.get("aggregated") or [])
            for rec in (ev.get("uids") or {}).values():
                status = str(rec.get("status", "unknown"))
                row["outcomes"][status] = row["outcomes"].get(status, 0) + 1
    mean = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731
    return [{"window": w, "t": r["t"], "compute_s": mean(r["compute"]), "comm_s": mean(r["comm"]),
             "gather_s": r["gather_s"], "aggregated": r["aggregated"], "outcomes": r["outcomes"],
             "phases": {name: mean(xs) for name, xs in r["phases"].items()}}
            for w, r in sorted(acc.items())[-RECENT_WINDOWS:]]


def _status_since(scores: dict[int, dict], uid: int, status: str) -> int | None:
    """The first window of the current unbroken run of `status` for `uid` in the validator's reports."""
    since = None
    for w in sorted(scores, reverse=True):
        if scores[w].get(uid, {}).get("status") != status:
            break
        since = w
    return since


def _reason(summary: dict, window: int | None, uid: int, status: str) -> str:
    """Why a peer is not 'ok': the full reason a miner gave for skipping it in `window` (e.g.
    'missing: gradient-... not found'), else how long the validator has reported that status."""
    for by_window in summary["skipped"].values():
        reason = by_window.get(window, {}).get(str(uid))
        if reason:
            return reason
    since = _status_since(summary["scores"], uid, status) if status not in ("ok", "-") else None
    return f"{status} since window {since}" if since is not None else ""


def _peers(summary: dict, window: int | None, last: dict[int, dict]) -> list[dict]:
    rows = []
    for uid in sorted(set(summary["behavior"]) | set(last)):
        s = last.get(uid, {})
        losses = summary["miner_loss"].get(uid, {})
        status = s.get("status", summary["miner_status"].get(uid, "-"))
        rows.append({"uid": uid, "behavior": summary["behavior"].get(uid, "?"), "status": status,
                     "reason": _reason(summary, window, uid, status),
                     "train_loss": losses[max(losses)] if losses else None,
                     "loss_score": s.get("loss_score"), "final": s.get("final"), "weight": s.get("weight"),
                     "evaluated": s.get("evaluated"), "gathered": s.get("gathered")})
    return rows


def dashboard_state(run_dir: str | os.PathLike) -> dict:
    run_dir = Path(run_dir)
    events = read_all_events(run_dir)
    summary = collect(events)
    window, last = latest_scores(summary)
    scores = summary["scores"]
    per_uid = lambda key: {uid: [[w, scores[w][uid].get(key) or 0.0] for w in sorted(scores)  # noqa: E731
                                 if uid in scores[w]] for uid in sorted({u for s in scores.values() for u in s})}
    return {
        "run": run_dir.resolve().name,
        "now": time.time(),
        "last_event_t": events[-1]["t"] if events else None,
        "window": max((int(e["window"]) for e in events if e.get("window") is not None), default=None),
        "scored_window": window,
        "heldout_loss": summary["heldout"].get(window) if window is not None else None,
        "neurons": _neurons(events, read_endpoints(run_dir)),
        "peers": _peers(summary, window, last),
        "windows": _windows(events),
        "series": {
            "train_loss": {uid: _series(s) for uid, s in sorted(summary["miner_loss"].items())},
            "heldout_loss": _series(summary["heldout"]),
            "weight": per_uid("weight"),
            "final": per_uid("final"),
        },
    }


def folder_signature(run_dir: str | os.PathLike) -> tuple:
    """Size and mtime of every file the state is built from: equal signatures, equal states."""
    files = [*sorted(events_dir(run_dir).glob("*.jsonl")), *sorted(endpoints_dir(run_dir).glob("*.json"))]
    out = []
    for path in files:
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        out.append((path.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


class StateCache:
    """`dashboard_state` rebuilt only when the run folder's logs changed (every open page polls)."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._state: dict = {}

    def get(self) -> dict:
        with self._lock:
            signature = folder_signature(self.run_dir)
            if signature != self._signature:
                self._state, self._signature = dashboard_state(self.run_dir), signature
            return {**self._state, "now": time.time()}
