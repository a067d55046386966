"""Summaries of a simulation: utilization per peer and for the network, time per phase, tokens
per window, the first bottleneck, and JSON lines for all of it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from statistics import median

from templar_jax.netsim.engine import PeerWindow, SimResult
from templar_jax.netsim.scenario import Overlap


def _working(res: SimResult, skip: int) -> list[PeerWindow]:
    return [r for r in res.records if r.window >= skip and r.status != "catching_up"]


def utilization(rows: Iterable[PeerWindow]) -> float:
    """Compute share as Covenant and the demo report count it: compute / (compute + communication
    on the critical path); waits for the chain's clock are not counted."""
    rows = list(rows)
    c = sum(r.compute_s for r in rows)
    m = sum(r.comm_s for r in rows)
    return float(c / (c + m)) if c + m > 0 else 0.0


# communication phases on a peer's critical path, per overlap mode (scenario.py)
ON_PATH = {Overlap.NONE: ("upload", "download", "aggregate"), Overlap.AFTER_UPLOAD: ("upload", "aggregate"),
           Overlap.FULL: ("land",)}


def bottleneck(rows: list[PeerWindow], overlap: Overlap) -> str:
    """What limits the network first: a protocol deadline that is missed, else the largest
    communication phase on the critical path (`compute` when they are all under 1%)."""
    n = max(1, len(rows))
    if sum(r.late for r in rows) / n > 0.05:
        return "upload window (uploads late)"
    timed_out = [r for r in rows if r.timeouts]
    if len(timed_out) / n > 0.05:
        limits = [r.download_limit for r in timed_out]
        return f"gather timeout ({max(set(limits), key=limits.count)})"
    if sum(r.truncated for r in rows) / n > 0.05:
        return "train deadline (steps cut)"
    if sum(r.comm_s for r in rows) < 0.01 * sum(r.compute_s for r in rows):
        return "compute"
    totals = {ph: sum(getattr(r, f"{ph}_s") for r in rows) for ph in ON_PATH[overlap]}
    top = max(totals, key=totals.__getitem__)
    return "landing (wait + rebase)" if top == "land" else top


def summary(res: SimResult, *, skip: int = 1) -> dict:
    """Network-wide figures over windows >= skip (window 0 starts cold)."""
    rows = _working(res, skip)
    sc = res.scenario
    med = (lambda xs: median(xs) if xs else 0.0)
    ok = [r for r in rows if r.inner_steps]
    per_peer: dict[int, list[PeerWindow]] = {}
    for r in rows:
        per_peer.setdefault(r.peer, []).append(r)
    tokens = []
    for w in range(skip, sc.windows):
        got = [r.gathered for r in rows if r.window == w and r.inner_steps]
        share = median(got) / len(res.gather_sets[w]) if got and res.gather_sets[w] else 0.0
        trained = sum(r.inner_steps for r in res.records if r.window == w and r.peer in res.gather_sets[w])
        tokens.append(share * trained * sc.work.tokens_per_step)  # what a median peer actually applied
    return {
        "model": sc.work.model, "peers": sc.peers, "windows": sc.windows, "overlap": sc.overlap.value,
        "payload_bytes": sc.work.payload_bytes, "window_s": sc.timing.window_s,
        "utilization": utilization(rows),
        "wall_utilization": sum(r.compute_s for r in rows) / max(1, len(rows)) / sc.timing.window_s,
        "peer_utilization": {p: utilization(rs) for p, rs in sorted(per_peer.items())},
        "median_s": {k: med([getattr(r, k) for r in ok]) for k in
                     ("compute_s", "comm_s", "upload_s", "download_s", "aggregate_s", "land_s")},
        "median_inner_steps": med([r.inner_steps for r in rows]),
        "median_landed_after_steps": med([r.landed_after_steps for r in rows if r.landed_after_steps is not None]),
        "aggregated_tokens_per_window": med(tokens),
        "aggregated_peers_per_window": med([r.gathered for r in ok]),
        "validator_eval_s": res.validator_eval_s,
        "late_uploads": sum(r.late for r in rows), "gather_timeouts": sum(r.timeouts > 0 for r in rows),
        "bottleneck": ("validator evaluation" if res.validator_eval_s > sc.timing.window_s
                       else bottleneck(rows, sc.overlap)),
    }


def jsonl(res: SimResult) -> Iterator[str]:
    """One line per (window, peer), then one per window, then the summary."""
    for r in res.records:
        d = dataclasses.asdict(r)
        d["segments"] = [[ph, round(a, 4), round(b, 4)] for ph, a, b in r.segments]
        yield json.dumps({"kind": "peer_window", **d})
    for w, g in enumerate(res.gather_sets):
        yield json.dumps({"kind": "window", "window": w, "gathered": g})
    yield json.dumps({"kind": "summary", **summary(res)})


def write_jsonl(lines: Iterable[str], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")
