"""`templar-jax gauntlet show`: inspect a validator's saved Gauntlet state (scores, weights)."""

from __future__ import annotations

import argparse
import json

_DESCRIPTION = """\
Read a validator's Gauntlet state file (JSON written atomically by the validator after every
window) and print each uid's rating, BMA, sync, final score, flags, and the chain weights and
gather/reserve peer list that state would produce.

typical use:
  templar-jax gauntlet show --state run/validator-0/gauntlet.json
  templar-jax gauntlet show --state run/validator-0/gauntlet.json --burn-fraction 0 --json
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gauntlet",
        help="inspect validator scoring state (Gauntlet)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="gauntlet_command", metavar="ACTION", required=True)
    p = sub.add_parser("show", help="print scores, weights and peer list from a state file",
                       description="Print scores, weights and the peer list from a state file.")
    p.add_argument("--state", required=True, help="path of the validator's gauntlet state JSON")
    p.add_argument("--burn-fraction", type=float, default=None,
                   help="weight share burned to --burn-uid (default: config default 0.5)")
    p.add_argument("--burn-uid", type=int, default=None, help="uid receiving burned weight")
    p.add_argument("--gather", type=int, default=20, help="gather peers in the peer list (run config peers.gather)")
    p.add_argument("--reserve", type=int, default=10, help="reserve peers (run config peers.reserve)")
    p.add_argument("--window", type=int, default=None,
                   help="window for ban checks (default: the state's last window)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_show)


def _cmd_show(args: argparse.Namespace) -> int:
    from templar_jax.gauntlet import (GauntletConfig, StateError, compute_weights, load_state,
                                      select_gather_peers)
    from templar_jax.gauntlet.selection import rank_uids

    overrides = {k: v for k, v in (("burn_fraction", args.burn_fraction),
                                   ("burn_uid", args.burn_uid)) if v is not None}
    cfg = GauntletConfig(**overrides)
    try:
        state = load_state(args.state)
    except StateError as exc:
        print(f"error: {exc}")
        return 1
    window = state.window if args.window is None else args.window
    weights = dict(zip(*compute_weights(state, window, cfg)))
    peers = select_gather_peers(state, state.peers, window, cfg, gather=args.gather, reserve=args.reserve)
    rows = []
    for uid in rank_uids(state, state.peers, cfg):
        rec = state.peers[uid]
        flags = [f for f, on in (("banned", rec.is_banned(window)), ("excluded", rec.excluded),
                                 (f"inactive{rec.inactive_windows}", rec.inactive_windows > 0)) if on]
        rows.append({"uid": uid, "final": rec.final_score, "ordinal": rec.ordinal(cfg),
                     "mu": rec.mu, "sigma": rec.sigma, "bma": rec.bma, "evals": rec.eval_count,
                     "sync": rec.sync, "loss_score": rec.loss_score,
                     "weight": weights.get(uid, 0.0), "flags": flags})
    if args.json:
        print(json.dumps({"window": state.window, "peers": rows, "weights": weights,
                          "gather": peers.gather, "reserve": peers.reserve}, indent=1))
        return 0
    _print_table(state.window, rows, weights, peers)
    return 0


def _print_table(window, rows, weights, peers) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Gauntlet state after window {window}")
    for col in ("uid", "final", "ordinal", "mu", "sigma", "bma", "evals", "sync", "loss",
                "weight", "flags"):
        table.add_column(col, justify="left" if col == "flags" else "right")
    for r in rows:
        table.add_row(str(r["uid"]), f"{r['final']:.4f}", f"{r['ordinal']:.2f}", f"{r['mu']:.2f}",
                      f"{r['sigma']:.2f}", f"{r['bma']:.3f}", str(r["evals"]), f"{r['sync']:.3f}",
                      f"{r['loss_score']:+.4f}", f"{r['weight']:.4f}", " ".join(r["flags"]))
    console = Console()
    console.print(table)
    extra = {u: w for u, w in weights.items() if u not in {r["uid"] for r in rows}}
    if extra:
        console.print(f"weight to uids without a record (burn): {extra}")
    console.print(f"gather: {peers.gather}\nreserve: {peers.reserve}")
