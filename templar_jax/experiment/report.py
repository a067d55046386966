"""Reporting for `experiment compare`: a rich table, a matplotlib (Agg) plot, and the JSON file."""

from __future__ import annotations

import json
from pathlib import Path


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def summary_table(out: dict):
    """A rich Table: final held-out loss, bytes per replica per round, ratios vs fp32/bf16."""
    from rich.table import Table

    cfg = out["config"]
    table = Table(title=(f"{cfg['model']} ({out['params']:,} params), {cfg['replicas']} replicas, "
                         f"H={cfg['inner_steps']}, {cfg['rounds']} rounds, "
                         f"{out['tokens_per_round'] * cfg['rounds']:,} tokens, data={cfg['data']}; "
                         f"initial loss {out['initial_loss']:.3f}"))
    # ratios: one dense fp32 / bf16 pseudo-gradient divided by what the method sends per round
    for col in ("method", "final loss", "sent/round", "bit/param", "x fp32", "x bf16", "s"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m, r in out["results"].items():
        table.add_row(m, f"{r['final_loss']:.4f}", _fmt_bytes(r["bytes_per_replica_per_round"]),
                      f"{r['bits_per_param']:.3f}", f"{r['ratio_vs_fp32']:.1f}x",
                      f"{r['ratio_vs_bf16']:.1f}x", f"{r['seconds']:.1f}")
    return table


def save_plot(out: dict, path: Path) -> Path:
    """Held-out loss vs tokens and vs cumulative bytes sent per replica (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_tok, ax_bytes) = plt.subplots(1, 2, figsize=(11, 4))
    for m, r in out["results"].items():
        ax_tok.plot(r["tokens"], r["heldout_loss"], marker="o", ms=3, label=m)
        sent = [r["bytes_per_replica_per_round"] * k for k in r["rounds"]]
        ax_bytes.plot(sent, r["heldout_loss"], marker="o", ms=3, label=m)
    ax_tok.set_xlabel("training tokens (all replicas)")
    ax_bytes.set_xlabel("bytes sent per replica (cumulative)")
    ax_bytes.set_xscale("log")
    for ax in (ax_tok, ax_bytes):
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
        ax.legend()
    cfg = out["config"]
    fig.suptitle(f"AdamW DDP vs DiLoCo vs SparseLoCo: {cfg['model']}, R={cfg['replicas']}, "
                 f"H={cfg['inner_steps']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_json(out: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path
