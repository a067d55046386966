"""`templar-jax dashboard RUN_FOLDER` (or `--config RUN_CONFIG` for a live network): serve the
live web dashboard."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="serve a live web dashboard of a run folder or a live network",
                       description="Serve a web page that follows a run folder's event logs while the network "
                                   "runs: windows and phases, peers with status and reasons, scores and weights "
                                   "over time, the global model's held-out loss, compute vs communication. With "
                                   "--config instead, follow a live network from its chain and the leader's "
                                   "bucket: uids, stake, the leader's weights, who each window aggregated.")
    p.add_argument("run_dir", metavar="RUN_FOLDER", nargs="?", default=None,
                   help="the run folder (e.g. runs/demo)")
    p.add_argument("--config", default=None,
                   help="instead of a run folder: a run config (name or path) naming the chain and storage")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of --config (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8050, help="port (default: 8050; 0: any free port)")
    p.set_defaults(func=_run)


def _live_source(config: str, overrides: list[str]):
    """A LiveNetwork over the run config's chain and the peers' committed buckets."""
    from templar_jax.config import load_run_config
    from templar_jax.dashboard.live import LiveNetwork
    from templar_jax.neurons.network import PeerDirectory, open_chain

    cfg = load_run_config(config, overrides)
    chain = open_chain(cfg.chain.backend, cfg.chain.network, cfg.chain.hotkey, netuid=cfg.chain.netuid,
                       wallet=cfg.chain.wallet, blocks_per_window=cfg.run.blocks_per_window,
                       block_time_s=cfg.run.block_time_s)
    peers = PeerDirectory(chain, cfg.storage.client)
    return LiveNetwork(chain, peers.bucket, version=cfg.run.version,
                       name=f"{cfg.chain.backend}:{cfg.chain.network} netuid {cfg.chain.netuid} v{cfg.run.version}")


def _run(args) -> int:
    import sys
    from pathlib import Path

    from templar_jax.config import RunConfigError
    from templar_jax.dashboard import DashboardServer
    from templar_jax.neurons.network import NetworkSetupError

    if (args.run_dir is None) == (args.config is None):
        print("templar-jax: give either a RUN_FOLDER or --config RUN_CONFIG", file=sys.stderr)
        return 2
    if args.config is not None:
        try:
            source = _live_source(args.config, args.overrides)
        except (RunConfigError, NetworkSetupError) as err:
            print(f"templar-jax: {err}", file=sys.stderr)
            return 1
    elif not Path(args.run_dir).is_dir():
        print(f"templar-jax: no run folder {args.run_dir}", file=sys.stderr)
        return 1
    else:
        source = args.run_dir
    try:
        server = DashboardServer(source, host=args.host, port=args.port)
    except OSError as err:  # the port is taken, or the address is not this machine's
        print(f"templar-jax: dashboard cannot listen on {args.host}:{args.port} ({err.strerror or err})",
              file=sys.stderr)
        return 1
    print(f"dashboard of {args.run_dir or args.config} at {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    return 0
