"""What-if grids: the same scenario over peers x link bandwidth x inner steps x overlap."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from templar_jax.netsim.build import with_inner_steps
from templar_jax.netsim.calibration import StageCosts
from templar_jax.netsim.engine import simulate
from templar_jax.netsim.report import summary
from templar_jax.netsim.scenario import Overlap, Scenario


def whatif(base: Scenario, costs: StageCosts, *, peers: Iterable[int], bandwidths_bps: Iterable[float],
           overlaps: Iterable[Overlap] = (Overlap.NONE, Overlap.FULL),
           inner_steps: Iterable[int] | None = None) -> list[dict]:
    """One row per cell: utilization, tokens per window and the first bottleneck. Bandwidth sets
    both directions of every peer's link."""
    rows = []
    for p in peers:
        for bw in bandwidths_bps:
            for steps in (inner_steps or [base.work.inner_steps]):
                for ov in overlaps:
                    sc = dataclasses.replace(with_inner_steps(base, steps), peers=p, overlap=ov,
                                             links=dataclasses.replace(base.links, up_bps=bw, down_bps=bw))
                    s = summary(simulate(sc, costs))
                    rows.append({"peers": p, "bandwidth_bps": bw, "inner_steps": steps, "overlap": ov.value,
                                 "utilization": s["utilization"], "wall_utilization": s["wall_utilization"],
                                 "aggregated_tokens_per_window": s["aggregated_tokens_per_window"],
                                 "aggregated_peers_per_window": s["aggregated_peers_per_window"],
                                 "bottleneck": s["bottleneck"]})
    return rows


def markdown(rows: list[dict]) -> str:
    """peers x bandwidth, one column per overlap mode: 'utilization%, peers aggregated per window
    (first bottleneck)'."""
    overlaps = list(dict.fromkeys(r["overlap"] for r in rows))
    head = "| peers | link | inner steps | " + " | ".join(f"overlap {o}" for o in overlaps) + " |"
    lines = [head, "|" + " --- |" * (3 + len(overlaps))]
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["peers"], r["bandwidth_bps"], r["inner_steps"]), {})[r["overlap"]] = r
    for (p, bw, steps), by in cells.items():
        link = f"{bw / 1e9:g} Gbit/s" if bw >= 1e9 else f"{bw / 1e6:g} Mbit/s"
        vals = [f"{100 * by[o]['utilization']:.1f}%, {by[o]['aggregated_peers_per_window']:g} agg "
                f"({by[o]['bottleneck']})" for o in overlaps]
        lines.append(f"| {p} | {link} | {steps} | " + " | ".join(vals) + " |")
    return "\n".join(lines)
