"""Reporting for `experiment compare` over seeds (the output of `seeds.compare_seeds`): a rich
table, matplotlib (Agg) plots (all methods, and one per method with every seed), the JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _title(out: dict) -> str:
    cfg = out["config"]
    seeds = out["seeds"]
    return (f"{cfg['model']} ({out['params']:,} params), {cfg['replicas']} replicas, "
            f"H={cfg['inner_steps']}, {cfg['rounds']} rounds, {out['tokens_per_method']:,} tokens "
            f"per method, data={cfg['data']}, seeds {','.join(map(str, seeds))}; "
            f"initial loss {out['initial_loss']['mean']:.3f}")


def _pm(s: dict) -> str:
    return f"{s['mean']:.4f}" if s["n"] == 1 else f"{s['mean']:.4f} +- {s['std']:.4f}"


def summary_table(out: dict):
    """A rich Table over the seeds: final held-out loss mean +- sample std and [min, max], bytes
    per replica per round, ratios vs one dense fp32/bf16 pseudo-gradient, seconds per run."""
    from rich.table import Table

    table = Table(title=_title(out))
    for col in ("method", "final loss", "min .. max", "sent/round", "bit/param", "x fp32",
                "x bf16", "s/run"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for m, r in out["summary"].items():
        f = r["final"]
        table.add_row(m, _pm(f), f"{f['min']:.4f} .. {f['max']:.4f}",
                      _fmt_bytes(r["bytes_per_replica_per_round"]), f"{r['bits_per_param']:.3f}",
                      f"{r['ratio_vs_fp32']:.1f}x", f"{r['ratio_vs_fp32'] / 2:.1f}x",
                      f"{r['seconds']['mean']:.1f}")
    return table


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_plot(out: dict, path: Path) -> Path:
    """All methods: mean held-out loss (band: +- one std over seeds) vs tokens and vs cumulative
    bytes sent per replica (log x)."""
    plt = _pyplot()
    fig, (ax_tok, ax_bytes) = plt.subplots(1, 2, figsize=(11, 4))
    for m, r in out["summary"].items():
        mean, std = np.asarray(r["curve_mean"]), np.asarray(r["curve_std"])
        sent = [r["bytes_per_replica_per_round"] * k for k in r["rounds"]]
        for ax, x in ((ax_tok, r["tokens"]), (ax_bytes, sent)):
            line, = ax.plot(x, mean, marker="o", ms=3, label=m)
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax_tok.set_xlabel("training tokens (all replicas)")
    ax_bytes.set_xlabel("bytes sent per replica (cumulative)")
    ax_bytes.set_xscale("log")
    for ax in (ax_tok, ax_bytes):
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(_title(out), fontsize=8)
    return _save(fig, plt, path)


def save_method_plots(out: dict, folder: Path) -> list[Path]:
    """One PNG per method (`compare-METHOD.png`): every seed's held-out loss curve and their mean."""
    plt = _pyplot()
    paths = []
    for m, r in out["summary"].items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for seed, run in zip(out["seeds"], out["runs"]):
            ax.plot(r["tokens"], run["results"][m]["heldout_loss"], lw=1, alpha=0.6,
                    label=f"seed {seed}")
        ax.plot(r["tokens"], r["curve_mean"], color="black", lw=2, label="mean")
        ax.set_xlabel("training tokens (all replicas)")
        ax.set_ylabel("held-out loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.set_title(f"{m}: final {_pm(r['final'])}, sends "
                     f"{_fmt_bytes(r['bytes_per_replica_per_round'])}/round", fontsize=9)
        paths.append(_save(fig, plt, folder / f"compare-{m}.png"))
    return paths


def _save(fig, plt, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save_json(out: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    return path
