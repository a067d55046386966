"""The demo's live view: one table of the latest window (each uid's loss, score, weight, status)."""

from __future__ import annotations

from rich.table import Table

from templar_jax.demo.report import collect, latest_scores
from templar_jax.events import read_all_events


def build_table(run_dir, behaviors: dict[int, str]) -> tuple[Table, dict]:
    summary = collect(read_all_events(run_dir))
    window, last = latest_scores(summary)
    heldout = summary["heldout"].get(window) if window is not None else None
    title = "templar-jax local network"
    if window is not None:
        title += f" - window {window}" + (f" - held-out loss {heldout:.3f}" if heldout is not None else "")
    else:
        title += " - starting (compiling, waiting for the start window)"
    table = Table(title=title)
    for col in ("uid", "behaviour", "train loss", "loss score", "final", "weight", "status"):
        table.add_column(col, justify="right" if col not in ("behaviour", "status") else "left")
    uids = sorted(set(behaviors) | set(summary["miner_loss"]) | set(last))
    for uid in uids:
        losses = summary["miner_loss"].get(uid, {})
        s = last.get(uid, {})
        fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
        table.add_row(str(uid), summary["behavior"].get(uid, behaviors.get(uid, "?")),
                      fmt(losses[max(losses)] if losses else None), fmt(s.get("loss_score")),
                      fmt(s.get("final")), fmt(s.get("weight")),
                      s.get("status", summary["miner_status"].get(uid, "-")))
    return table, summary


def progress_line(summary: dict) -> str | None:
    """A one-line status for non-interactive output (CI logs)."""
    window, last = latest_scores(summary)
    if window is None:
        return None
    parts = [f"{u}:{v.get('weight', 0.0):.3f}" for u, v in sorted(last.items())]
    held = summary["heldout"].get(window)
    return f"window {window}: held-out loss {held if held is None else round(held, 4)}; weights " + " ".join(parts)
