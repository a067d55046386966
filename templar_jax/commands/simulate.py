"""`templar-jax simulate`: how long a window takes, where the time goes and what fraction is
compute, for P peers of a model on given links (templar_jax/netsim, a discrete-event model of
the protocol calibrated on this project's own measurements)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Covenant-72B's published setup: 20 contributing peers, 30 inner steps in a 20-minute compute
# window, 500 Mbit/s down and 110 Mbit/s up per peer (the run's stated typical links).
COVENANT = {"peers": 20, "up_mbit": 110.0, "down_mbit": 500.0, "published_utilization": 0.945}


def _costs(args):
    from templar_jax.netsim import load_costs, packaged_calibration

    if args.calibration:
        return load_costs(args.calibration)
    if args.model == "covenant-72b":
        return load_costs(packaged_calibration("covenant-72b"))
    raise SystemExit("simulate: give --calibration FILE (or make one with --calibrate --write FILE)")


def _scenario(args, cfg, overlap):
    from templar_jax.netsim import Churn, Faults, Links, Store, StampRule, mbit, scenario_from_config

    links = Links(up_bps=mbit(args.up_mbit), down_bps=mbit(args.down_mbit), latency_s=args.latency_s,
                  spread=args.spread)
    default = Store()  # the Bucket's TransferConfig
    store = Store(egress_bps=args.store_egress_gbit * 1e9,
                  part_size=default.part_size if args.part_mib is None else args.part_mib << 20,
                  parallel_parts=default.parallel_parts if args.parallel_parts is None else args.parallel_parts,
                  stamp=StampRule(args.stamp))
    return scenario_from_config(
        cfg, links=links, peers=args.peers, windows=args.windows, store=store, overlap=overlap,
        churn=Churn(args.leave, args.join, args.catch_up_windows),
        faults=Faults(args.stragglers, args.straggler_slowdown, args.upload_failure),
        processes_per_host=args.processes_per_host, inner_steps=args.inner_steps, seed=args.seed)


def _run(args: argparse.Namespace) -> int:
    from templar_jax.config import load_run_config
    from templar_jax.netsim import (ASSUMPTIONS, Overlap, calibrate, gantt_png, jsonl, markdown,
                                    save_costs, simulate, summary, validate_run, whatif,
                                    write_jsonl)

    config = args.config or ("covenant-72b" if args.model == "covenant-72b" else "demo")
    cfg = load_run_config(config, args.set or [])
    if args.model:
        cfg = cfg.with_overrides([f"model.preset={args.model}"])
    if args.calibrate:
        costs = calibrate(cfg)
        if args.write:
            save_costs(costs, args.write)
            print(f"wrote {args.write}")
        for k, f in costs.figures.items():
            print(f"{k:24s} {f.value:.4g}  [{f.source}; {f.device}]")
        return 0
    if args.model == "covenant-72b":
        for k in ("peers", "up_mbit", "down_mbit"):
            if getattr(args, k) is None:
                setattr(args, k, COVENANT[k])
    args.peers = args.peers or 6
    args.up_mbit = args.up_mbit or 1000.0
    args.down_mbit = args.down_mbit or 1000.0
    costs = _costs(args)
    out = Path(args.out) if args.out else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    overlaps = [Overlap(o) for o in args.overlap]
    if args.validate:
        v = validate_run(args.validate, costs)
        p, m, e = v["predicted"], v["measured"], v["error"]
        pm, mm = p["median_s"], m["median_s"]
        print(f"{args.validate}: compute share predicted {100 * p['utilization']:.1f}% vs measured "
              f"{100 * m['utilization']:.1f}% ({e['utilization_points']:+.1f} points); median compute "
              f"{pm['compute_s']:.2f} s vs {mm['compute_s']:.2f} s ({100 * e['compute_s_rel']:+.0f}%); "
              f"median comm {pm['comm_s']:.2f} s vs {mm['comm_s']:.2f} s ({100 * e['comm_s_rel']:+.0f}%)"
              + (f"; outer step landed after {p['median_landed_after_steps']} vs {m['median_landed_after_steps']}"
                 " inner steps" if m["median_landed_after_steps"] is not None else ""))
        return 0
    if args.whatif:
        base = _scenario(args, cfg, overlaps[0])
        rows = whatif(base, costs, peers=args.whatif_peers, bandwidths_bps=[b * 1e6 for b in args.whatif_mbit],
                      overlaps=overlaps, inner_steps=args.whatif_steps)
        print(markdown(rows))
        if out:
            write_jsonl((json.dumps({"kind": "whatif", **r}) for r in rows), out / "whatif.jsonl")
        return 0
    for ov in overlaps:
        res = simulate(_scenario(args, cfg, ov), costs)
        s = summary(res)
        line = (f"{cfg.model.preset}: {args.peers} peers, overlap {ov.value}: utilization {100 * s['utilization']:.1f}%"
                f" (wall {100 * s['wall_utilization']:.1f}%), median compute {s['median_s']['compute_s']:.1f} s,"
                f" comm {s['median_s']['comm_s']:.1f} s (upload {s['median_s']['upload_s']:.1f},"
                f" download {s['median_s']['download_s']:.1f}, aggregate {s['median_s']['aggregate_s']:.1f}"
                + (f", landing {s['median_s']['land_s']:.1f} after {s['median_landed_after_steps']:g} steps"
                   if ov == Overlap.FULL else "") + "),"
                f" payload {s['payload_bytes'] / 1e9:.3g} GB, {s['aggregated_peers_per_window']:g} peers aggregated"
                f" per window ({s['aggregated_tokens_per_window'] / 1e6:.3g}M tokens), bottleneck: {s['bottleneck']}")
        if args.model == "covenant-72b":
            line += f"; Covenant published {100 * COVENANT['published_utilization']:.1f}%"
        print(line)
        if out:
            write_jsonl(jsonl(res), out / f"sim-{ov.value}.jsonl")
            gantt_png(res, out / f"gantt-{ov.value}.png")
    if args.assumptions:
        print(ASSUMPTIONS)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate the network's windows (utilization, phases, what-ifs)",
                              description=__doc__)
    p.add_argument("--config", default=None, help="run config name or YAML path (default: demo, or covenant-72b)")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="run-config override (repeatable)")
    p.add_argument("--model", default=None, help="model preset (covenant-72b: the published setup and calibration)")
    p.add_argument("--calibration", default=None, help="stage-cost file (YAML/JSON) with sources")
    p.add_argument("--calibrate", action="store_true", help="measure stage costs on this machine and print them")
    p.add_argument("--write", default=None, help="with --calibrate: write the calibration file here")
    p.add_argument("--peers", type=int, default=None)
    p.add_argument("--windows", type=int, default=20)
    p.add_argument("--inner-steps", type=int, default=None, help="default: the run config's inner.steps")
    p.add_argument("--up-mbit", type=float, default=None, help="median upload Mbit/s per peer (default 1000)")
    p.add_argument("--down-mbit", type=float, default=None, help="median download Mbit/s per peer (default 1000)")
    p.add_argument("--latency-s", type=float, default=0.05)
    p.add_argument("--spread", type=float, default=0.0, help="lognormal sigma of per-peer link rates")
    p.add_argument("--store-egress-gbit", type=float, default=10.0, help="per-bucket egress Gbit/s")
    p.add_argument("--part-mib", type=int, default=None, help="transfer part size (MiB; default: the Bucket's, 64)")
    p.add_argument("--parallel-parts", type=int, default=None, help="parts in flight (default: the Bucket's, 8)")
    p.add_argument("--stamp", choices=("completion", "initiation"), default="completion",
                   help="which instant the store stamps on an upload")
    p.add_argument("--overlap", nargs="+", default=["none", "full"], choices=("none", "after_upload", "full"),
                   help="full: the neurons' run config sparseloco.overlap (see --assumptions)")
    p.add_argument("--processes-per-host", type=int, default=1)
    p.add_argument("--leave", type=float, default=0.0, help="probability a peer leaves after a window")
    p.add_argument("--join", type=float, default=0.0, help="expected joiners per window")
    p.add_argument("--catch-up-windows", type=int, default=1)
    p.add_argument("--stragglers", type=float, default=0.0, help="fraction of slow peers")
    p.add_argument("--straggler-slowdown", type=float, default=2.0)
    p.add_argument("--upload-failure", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--validate", default=None, metavar="RUN_DIR",
                   help="simulate a recorded demo run and compare with its event log")
    p.add_argument("--whatif", action="store_true", help="grid over --whatif-peers x --whatif-mbit x overlap")
    p.add_argument("--whatif-peers", type=int, nargs="+", default=[20, 100, 500])
    p.add_argument("--whatif-mbit", type=float, nargs="+", default=[100, 1000, 10000])
    p.add_argument("--whatif-steps", type=int, nargs="+", default=None)
    p.add_argument("--out", default=None, help="folder for JSON lines and Gantt PNGs")
    p.add_argument("--assumptions", action="store_true", help="print the model's assumptions")
    p.set_defaults(func=_run)
