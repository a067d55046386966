"""`templar-jax demo`: a whole local network (chain, buckets, validator, miners) on one machine."""

from __future__ import annotations

from pathlib import Path

from templar_jax.demo.behavior_names import GALLERY, behavior_names


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the local network demo (embedded chain, file buckets, tiny model)",
        description="Start a LocalChain and file buckets in runs/<id>/, one validator and several miners as "
                    "separate processes (default: 4 honest, 1 copier, 1 noise), show a live table, and "
                    "write runs/<id>/report.md with plots.")
    p.add_argument("--run-id", default="demo", help="run folder name under runs/ (default: demo)")
    p.add_argument("--resume", action="store_true",
                   help="resume the existing run folder instead of starting fresh")
    p.add_argument("--windows", type=int, default=15, help="windows to run (default: 15)")
    p.add_argument("--honest", type=int, default=4, help="honest miners (default: 4)")
    p.add_argument("--copiers", type=int, default=1, help="miners copying uid 1's payload (default: 1)")
    p.add_argument("--noise", type=int, default=1, help="miners uploading noise (default: 1)")
    p.add_argument("--corrupt", type=int, default=0, help="miners uploading corrupted bytes (default: 0)")
    p.add_argument("--adversary", dest="adversaries", action="append", default=[], metavar="BEHAVIOR",
                   help="one more miner with this --behavior (repeatable): " + ", ".join(behavior_names()))
    p.add_argument("--gallery", action="store_true",
                   help="add one miner of each issue-22 attack: " + ", ".join(GALLERY))
    p.add_argument("--config", default="demo", help="shipped run config name or a YAML path (default: demo)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a run-config key for every neuron (repeatable)")
    p.add_argument("--timeout-s", type=float, default=900.0, help="give up after this long (default: 900)")
    p.add_argument("--no-live", action="store_true", help="print one line per window instead of a live table")
    p.add_argument("--dashboard", nargs="?", type=int, const=8050, default=None, metavar="PORT",
                   help="serve the live web dashboard at http://127.0.0.1:PORT/ (default 8050) and turn on "
                        "each neuron's metrics endpoint")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from templar_jax.demo.run import run_demo

    return run_demo(run_dir=Path("runs") / args.run_id, config=args.config, overrides=args.overrides,
                    windows=args.windows, honest=args.honest, copiers=args.copiers, noise=args.noise,
                    corrupt=args.corrupt, adversaries=[*args.adversaries, *(GALLERY if args.gallery else ())],
                    resume=args.resume, timeout_s=args.timeout_s,
                    live=False if args.no_live else None, dashboard_port=args.dashboard)
