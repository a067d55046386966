"""Turns a run's event logs into the demo's end-of-run report: `report.md` plus PNG plots.

Inputs are the JSON-lines events neurons write (see `templar_jax.events`):
  miner     "window": window, train_loss, compute_s, comm_s, gathered, skipped, behavior
            (overlapped outer steps add comm_hidden_s and landed_after_steps; comm_s is then the
            communication the training thread waited for)
            "phase": window, phase, start, end, lane (main: the training thread; comm: overlap's)
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
    window_timing: dict[int, list[dict]] = defaultdict(list)  # window -> one record per miner
    phases: dict[int, list[tuple]] = defaultdict(list)  # uid -> [(window, phase, start, end, lane)]
    for ev in events:
        uid, kind = ev.get("uid"), ev.get("event")
        if ev.get("role") == "miner":
            behavior.setdefault(uid, ev.get("behavior", "honest"))
            if kind == "window":
                w = int(ev["window"])
                if ev.get("train_loss") is not None:
                    miner_loss[uid][w] = float(ev["train_loss"])
                timing[uid].append((float(ev.get("compute_s", 0.0)), float(ev.get("comm_s", 0.0))))
                if ev.get("status", "ok") == "ok":
                    window_timing[w].append({
                        "uid": uid, "compute_s": float(ev.get("compute_s", 0.0)),
                        "comm_s": float(ev.get("comm_s", 0.0)), "hidden_s": float(ev.get("comm_hidden_s", 0.0)),
                        "overlap": bool(ev.get("overlap", False))})
                miner_status[uid] = ev.get("status", "ok")
                if ev.get("skipped"):
                    skipped[uid][w] = ev["skipped"]
            elif kind == "phase":
                phases[uid].append((int(ev["window"]), ev["phase"], float(ev["start"]), float(ev["end"]),
                                    ev.get("lane", "main")))
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
        "window_timing": dict(window_timing),
        "phases": dict(phases),
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
    timeline = plot_timeline(summary, out_dir)
    return paths + ([timeline] if timeline else [])


PHASE_COLORS = {"train": "tab:green", "compress": "tab:olive", "upload": "tab:blue", "gather": "tab:cyan",
                "outer_step": "tab:purple", "land": "tab:red", "gather_wait": "lightgrey"}


def plot_timeline(summary: dict, out_dir: Path, windows: int = 4) -> Path | None:
    """The first miner's last `windows` windows: each phase as a bar on its thread's lane."""
    import matplotlib.pyplot as plt

    if not summary["phases"]:
        return None
    uid = min(summary["phases"])
    rows = summary["phases"][uid]
    last = max(r[0] for r in rows)
    rows = [r for r in rows if r[0] > last - windows]
    t0 = min(r[2] for r in rows)
    lanes = sorted({r[4] for r in rows}, key=lambda lane: lane != "main")
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.6 * len(lanes)))
    for window, phase, start, end, lane in rows:
        y = lanes.index(lane)
        ax.broken_barh([(start - t0, max(end - start, 1e-3))], (y - 0.35, 0.7),
                       color=PHASE_COLORS.get(phase, "grey"))
        if phase == "train":
            ax.text(start - t0, y + 0.42, f"W{window}", fontsize=7)
    ax.set_yticks(range(len(lanes)), [f"{lane} thread" for lane in lanes])
    ax.set_xlabel("seconds")
    ax.set_title(f"miner {uid}: phases of its last {windows} windows")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in PHASE_COLORS.values()]
    ax.legend(handles, list(PHASE_COLORS), fontsize=7, ncol=len(PHASE_COLORS), loc="upper center",
              bbox_to_anchor=(0.5, -0.55))
    fig.tight_layout()
    p = out_dir / "timeline.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def compute_share_rows(summary: dict) -> list[tuple[int, str, float, float, float, float]]:
    """Per window: (window, mode, mean compute s, mean exposed comm s, mean hidden comm s,
    compute share = compute / (compute + exposed comm), summed over the miners)."""
    out = []
    for w, recs in sorted(summary["window_timing"].items()):
        comp = sum(r["compute_s"] for r in recs)
        comm = sum(r["comm_s"] for r in recs)
        mode = "overlap" if all(r["overlap"] for r in recs) else "sync" if not any(r["overlap"] for r in recs) else "mixed"
        n = len(recs)
        out.append((w, mode, comp / n, comm / n, sum(r["hidden_s"] for r in recs) / n,
                    comp / max(comp + comm, 1e-9)))
    return out


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
        rows = compute_share_rows(summary)
        if rows:
            lines += ["", "Per window (mean over miners; communication = the time the training thread spent on "
                      "it, clock waits excluded; hidden = upload + gather + outer step run on the comm thread "
                      "beside training when outer steps overlap):", ""]
            lines.append("| window | mode | compute s | communication s | hidden s | compute share |")
            lines.append("| --- | --- | --- | --- | --- | --- |")
            lines += [f"| {w} | {m} | {c:.2f} | {x:.2f} | {h:.2f} | {share:.1%} |" for w, m, c, x, h, share in rows]
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
