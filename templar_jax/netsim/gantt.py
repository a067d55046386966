"""A Gantt-style PNG: one row per peer, one colour per phase, a few windows."""

from __future__ import annotations

from pathlib import Path

from templar_jax.netsim.engine import SimResult
from templar_jax.netsim.scenario import Overlap

COLOURS = {"train": "tab:green", "prepare": "tab:olive", "upload": "tab:orange", "download": "tab:blue",
           "aggregate": "tab:purple", "land": "tab:red", "catch_up": "tab:gray"}
COMM_LANE = ("upload", "download", "aggregate")  # with overlap full, drawn above the training lane


def gantt_png(res: SimResult, path: str | Path, *, windows: tuple[int, int] = (1, 4), max_peers: int = 30) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = windows
    rows = [r for r in res.records if lo <= r.window < hi and r.peer < max_peers]
    peers = sorted({r.peer for r in rows})
    fig, ax = plt.subplots(figsize=(12, 0.3 * len(peers) + 1.5))
    two_lanes = res.scenario.overlap == Overlap.FULL
    for r in rows:
        y = peers.index(r.peer)
        for ph, a, b in r.segments:
            if b > a:
                lane = (y, 0.4) if ph in COMM_LANE else (y - 0.4, 0.4)
                ax.broken_barh([(a, b - a)], lane if two_lanes else (y - 0.4, 0.8), color=COLOURS.get(ph, "k"))
    w = res.scenario.timing.window_s
    for k in range(lo, hi + 1):
        ax.axvline(k * w, color="k", lw=0.5, ls="--")
    ax.set_yticks(range(len(peers)), [f"peer {p}" for p in peers])
    ax.set_xlabel("seconds (dashed: window starts)")
    ax.set_title(f"{res.scenario.work.model}: {res.scenario.peers} peers, overlap {res.scenario.overlap.value}")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in COLOURS.values()]
    ax.legend(handles, list(COLOURS), loc="upper right", fontsize=7, ncol=6)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
