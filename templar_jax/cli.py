"""One console command, `templar-jax`, with subcommands.

Each subcommand lives in `templar_jax/commands/<name>.py` and exposes
`register(subparsers)`, which adds its parser and sets `func(args) -> int`.
Heavy imports (jax, flax) happen inside `func`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Module names under templar_jax.commands; each adds one or more subcommands.
COMMAND_MODULES: list[str] = [
    "train",
    "plan",
    "experiment",
    "chain",
    "data",
    "convert",
    "launch",
    "gauntlet",
    "neurons",
    "demo",
    "dashboard",
    "payload",
    "eval",
    "config",
    "simulate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="templar-jax",
        description="Decentralized LLM pre-training with SparseLoCo and Gauntlet, in JAX/Flax.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"templar_jax.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
