"""Turns a run's event logs into the demo's end-of-run report: `report.md` plus PNG plots.

Inputs are the JSON-lines events neurons write (see `templar_jax.events`):
  miner     "window": window, train_loss, compute_s, comm_s, gathered, skipped, behavior
  validator "scores": window, heldout_loss, uids: {uid: {loss_score, final, weight, status, ...}}
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np


def collect(events: list[dict]) -> dict[str, Any]:
    """Group events into per-window series the table, report and plots share."""
    miner_loss: dict[int, dict[int, float]] = defaultdict(dict)  # uid -> window -> loss
    timing: dict[int, list[tuple[float, float]]] = defaultdict(list)  # uid -> [(compute, comm)]
    behavior: dict[int, str] = {}
    heldout: dict[int, float] = {}
    scores: dict[int, dict] = {}  # window -> per-uid dict
    miner_status: dict[int, str] = {}
    skipped: dict[int, dict] = defaultdict(dict)  # uid -> window -> {peer: reason}
    for ev in events:
        uid, kind = ev.get("uid"), ev.get("event")
        if ev.get("role") == "miner":
            behavior.setdefault(uid, ev.get("behavior", "honest"))
            if kind == "window":
                w = int(ev["window"])
                if ev.get("train_loss") is not None:
                    miner_loss[uid][w] = float(ev["train_loss"])
                timing[uid].append((float(ev.get("compute_s", 0.0)), float(ev.get("comm_s", 0.0))))
                miner_status[uid] = ev.get("status", "ok")
                if ev.get("skipped"):
                    skipped[uid][w] = ev["skipped"]
            elif kind in ("error", "stopped"):
                miner_status[uid] = kind
        elif ev.get("role") == "validator" and kind == "scores":
            w = int(ev["window"])
            if ev.get("heldout_loss") is not None:
                heldout[w] = float(ev["heldout_loss"])
            scores[w] = {int(k): v for k, v in ev.get("uids", {}).items()}
    return {
        "miner_loss": dict(miner_loss),
        "timing": dict(timing),
        "behavior": behavior,
        "heldout": heldout,
        "scores": scores,
        "miner_status": miner_status,
        "skipped": dict(skipped),
    }


def latest_scores(summary: dict) -> tuple[int | None, dict[int, dict]]:
    if not summary["scores"]:
        return None, {}
    w = max(summary["scores"])
    return w, summary["scores"][w]


def plot(summary: dict, out_dir: str | os.PathLike) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for uid, series in sorted(summary["miner_loss"].items()):
        ws = sorted(series)
        label = f"miner {uid} ({summary['behavior'].get(uid, 'honest')})"
        ax.plot(ws, [series[w] for w in ws], marker=".", alpha=0.7, label=label)
    if summary["heldout"]:
        ws = sorted(summary["heldout"])
        ax.plot(ws, [summary["heldout"][w] for w in ws], "k-", lw=2.5, label="global model, held-out")
    ax.set_xlabel("window")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Loss per window")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    p = out_dir / "loss.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    _, last = latest_scores(summary)
    if last:
        uids = sorted(last)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        labels = [f"{u}\n{summary['behavior'].get(u, '?')}" for u in uids]
        axes[0].bar(labels, [last[u].get("final", 0.0) for u in uids], color="tab:blue")
        axes[0].set_title("final score")
        axes[1].bar(labels, [last[u].get("weight", 0.0) for u in uids], color="tab:green")
        axes[1].set_title("weight")
        for a in axes:
            a.tick_params(axis="x", labelsize=7)
            a.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        p = out_dir / "scores.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths


def _fmt(x: Any, nd: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _failures(summary: dict) -> list[tuple[int, int, str]]:
    """(window, uid, status) for every payload the validator did not accept."""
    out = []
    for w, per_uid in sorted(summary["scores"].items()):
        for uid, s in sorted(per_uid.items()):
            status = s.get("status", "ok")
            if status != "ok":
                out.append((w, uid, status))
    return out


def write_report(run_dir: str | os.PathLike, summary: dict, header: dict[str, Any]) -> Path:
    """Writes run_dir/report.md (and the plots next to it); returns the report path."""
    run_dir = Path(run_dir)
    plots = plot(summary, run_dir)
    w, last = latest_scores(summary)
    lines = ["# templar-jax local network demo: report", ""]
    for k, v in header.items():
        lines.append(f"- **{k}**: {v}")
    lines += ["", "## Final scores and weights", ""]
    if last:
        lines.append(f"As scored by the validator at window {w}.")
        lines.append("")
        lines.append("| uid | behaviour | last train loss | loss score | final | weight | status |")
        lines.append("| --- | --- | --- | --- | --- | --- | --- |")
        for uid in sorted(last):
            s = last[uid]
            losses = summary["miner_loss"].get(uid, {})
            tl = losses[max(losses)] if losses else None
            lines.append(
                f"| {uid} | {summary['behavior'].get(uid, '?')} | {_fmt(tl)} | "
                f"{_fmt(s.get('loss_score'))} | {_fmt(s.get('final'))} | {_fmt(s.get('weight'))} | "
                f"{s.get('status', '-')} |"
            )
    else:
        lines.append("The validator produced no scores.")
    if summary["heldout"]:
        ws = sorted(summary["heldout"])
        lines += ["", "## Global model, held-out loss", ""]
        lines.append(
            f"Window {ws[0]}: {summary['heldout'][ws[0]]:.4f} -> window {ws[-1]}: "
            f"{summary['heldout'][ws[-1]]:.4f} nats/token."
        )
    timing = [t for ts in summary["timing"].values() for t in ts]
    if timing:
        comp = np.array([t[0] for t in timing])
        comm = np.array([t[1] for t in timing])
        lines += ["", "## Compute vs communication per window (miners)", ""]
        lines.append(
            f"compute {comp.mean():.2f} s (median {np.median(comp):.2f}), communication "
            f"{comm.mean():.2f} s (median {np.median(comm):.2f}); compute share "
            f"{comp.sum() / max(comp.sum() + comm.sum(), 1e-9):.1%}."
        )
    failures = _failures(summary)
    if failures:
        lines += ["", "## Payloads not applied (as seen by the validator)", ""]
        lines.append("| window | uid | reason |")
        lines.append("| --- | --- | --- |")
        lines += [f"| {w} | {u} | {r} |" for w, u, r in failures]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
