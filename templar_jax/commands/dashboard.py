"""`templar-jax dashboard RUN_FOLDER`: serve the live web dashboard of a run folder."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="serve a live web dashboard of a run folder",
                       description="Serve a web page that follows a run folder's event logs while the network "
                                   "runs: windows and phases, peers with status and reasons, scores and weights "
                                   "over time, the global model's held-out loss, compute vs communication.")
    p.add_argument("run_dir", metavar="RUN_FOLDER", help="the run folder (e.g. runs/demo)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port (default: 8050; 0: any free port)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    import sys
    from pathlib import Path

    from templar_jax.dashboard import DashboardServer

    if not Path(args.run_dir).is_dir():
        print(f"templar-jax: no run folder {args.run_dir}", file=sys.stderr)
        return 1
    server = DashboardServer(args.run_dir, host=args.host, port=args.port)
    print(f"dashboard of {args.run_dir} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
