"""`templar-jax miner` and `templar-jax validator`: run one neuron against any chain + bucket."""

from __future__ import annotations

import argparse

from templar_jax.demo.behavior_names import behavior_names


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="tiny-local",
                   help="shipped run config name (templar_jax/configs/runs/NAME.yaml) or a path (default: tiny-local)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a run-config key (repeatable), e.g. --set inner.lr=3e-4")
    p.add_argument("--hotkey", default=None,
                   help="hotkey this neuron acts as (default: the run config's chain.hotkey)")
    p.add_argument("--run-dir", default="runs/neuron", help="folder for event logs and local state")
    p.add_argument("--windows", type=int, default=None,
                   help="stop after this many windows from the run's start window (default: run forever)")
    p.add_argument("--register-stake", type=float, default=None,
                   help="LocalChain only: register the hotkey with this stake if it is not registered")
    p.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                   help="serve Prometheus/OpenMetrics metrics at http://HOST:PORT/metrics (= --set metrics.port=PORT; "
                        "0: any free port, recorded in RUN_DIR/metrics/)")


def register(sub) -> None:
    p = sub.add_parser("miner", help="run a miner: train, compress, upload, gather, outer step",
                       description="Run one miner's window loop (SPEC sec. 1-2). Secrets come only from "
                                   "the environment (TEMPLAR_S3_* for S3/R2 buckets).")
    _common(p)
    p.add_argument("--behavior", default="honest",
                   help="honest (default) or an adversarial mode for demos/tests: " + " | ".join(behavior_names()[1:]))
    p.set_defaults(func=_run_miner)
    p = sub.add_parser("validator", help="run a validator: gather, score (Gauntlet), set weights",
                       description="Run one validator's window loop (SPEC sec. 1, 3, 5).")
    _common(p)
    p.add_argument("--validator-seed", type=int, default=0, help="seed for the validator's evaluation samples")
    p.set_defaults(func=_run_validator)


def _config(args):
    """(run config, hotkey) or a one-line error for the user."""
    import sys

    from templar_jax.config import RunConfigError, load_run_config

    try:
        port = [] if args.metrics_port is None else [f"metrics.port={args.metrics_port}"]
        cfg = load_run_config(args.config, [*args.overrides, *port])
    except RunConfigError as err:
        print(f"templar-jax: {err}", file=sys.stderr)
        return None, None
    hotkey = args.hotkey or cfg.chain.hotkey
    if not hotkey:
        print("templar-jax: no hotkey: pass --hotkey or set chain.hotkey in the run config", file=sys.stderr)
        return None, None
    return cfg, hotkey


def _run_miner(args) -> int:
    from templar_jax.demo.behaviors import BehaviorError, parse_behavior
    from templar_jax.neurons.assemble import build_miner

    cfg, hotkey = _config(args)
    if cfg is None:
        return 1
    try:
        upload = parse_behavior(args.behavior)
    except BehaviorError as err:
        print(f"templar-jax: {err}")
        return 1
    miner = build_miner(cfg, hotkey=hotkey, run_dir=args.run_dir, upload=upload,
                        register_stake=args.register_stake)
    return miner.run(args.windows)


def _run_validator(args) -> int:
    from templar_jax.neurons.assemble import build_validator

    cfg, hotkey = _config(args)
    if cfg is None:
        return 1
    validator = build_validator(cfg, hotkey=hotkey, run_dir=args.run_dir, register_stake=args.register_stake,
                                validator_seed=args.validator_seed)
    return validator.run(args.windows)
