"""`templar-jax chain ...`: create and inspect the embedded local chain (one SQLite file)."""

from __future__ import annotations

import argparse
import json
import logging
import pathlib

log = logging.getLogger(__name__)

DEFAULT_PATH = "run/chain.db"
MASK_PREFIX_CHARS = 6

_DESCRIPTION = """\
Manage the embedded local chain: one SQLite file that every miner and validator on this
machine opens to agree on blocks, uids, stake, commitments and weights (a stand-in for
Bittensor in demos and tests).

typical use:
  templar-jax chain init --path run/chain.db --block-time 1 --blocks-per-window 10
  templar-jax chain register --path run/chain.db --hotkey validator-0 --stake 1000
  templar-jax chain register --path run/chain.db --hotkey miner-0
  templar-jax chain status --path run/chain.db
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "chain",
        help="create/inspect the embedded local chain (SQLite)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="chain_command", metavar="ACTION", required=True)

    p = sub.add_parser(
        "init",
        help="create a new chain file",
        description="Create a new local chain database and store its run-level settings. "
        "Blocks follow the wall clock (block = (now - genesis) / block-time) unless --manual.",
    )
    _add_path(p)
    p.add_argument("--block-time", type=float, default=12.0,
                   help="seconds per block (1 for demos, 12 like Bittensor; default 12)")
    p.add_argument("--blocks-per-window", type=int, default=115,
                   help="blocks per training window (window = block // this; default 115)")
    p.add_argument("--manual", action="store_true",
                   help="blocks move only with `chain advance` (for tests and step-by-step demos)")
    p.add_argument("--max-uids", type=int, default=256, help="uid slots (default 256)")
    p.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                   help="extra run-level setting stored with the chain (VALUE parsed as JSON "
                   "when possible, else kept as text); repeatable")
    p.add_argument("--force", action="store_true", help="delete an existing chain at --path first")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser(
        "register",
        help="register a hotkey (returns its uid)",
        description="Give a hotkey the next free uid. Registering an existing hotkey prints its "
        "uid again and, if --stake is given, sets its stake. Validators need stake; the "
        "highest-stake uid is the leader validator.",
    )
    _add_path(p)
    p.add_argument("--hotkey", required=True, help="hotkey name, e.g. validator-0 or miner-3")
    p.add_argument("--stake", type=float, default=None,
                   help="stake of this hotkey (default: 0 for new hotkeys, unchanged otherwise)")
    p.set_defaults(func=_cmd_register)

    p = sub.add_parser(
        "status",
        help="print block, window, neurons, commitments and weights",
        description="Show the chain: settings, current block and window, one row per uid "
        "(hotkey, stake, incentive, commitment with secrets masked) and the latest weights "
        "of every validator.",
    )
    _add_path(p)
    p.add_argument("--json", action="store_true",
                   help="print machine-readable JSON instead of tables (commitments still masked)")
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser(
        "advance",
        help="move a --manual chain forward",
        description="Advance the head block of a chain created with --manual.",
    )
    _add_path(p)
    p.add_argument("-n", "--blocks", type=int, default=1, help="blocks to advance (default 1)")
    p.set_defaults(func=_cmd_advance)


def _add_path(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--path", default=DEFAULT_PATH,
                        help=f"chain database file (default {DEFAULT_PATH})")


def mask_commitment(data: str) -> str:
    """A short prefix and the length: enough to tell commitments apart, never the secret."""
    from templar_jax.chain.validation import is_valid_commitment

    if not is_valid_commitment(data):
        return f"(invalid commitment, {len(data)} chars)"
    n_bytes = len(data.encode("utf-8"))
    prefix = data[:MASK_PREFIX_CHARS]
    if len(data) <= MASK_PREFIX_CHARS:  # a prefix would be all of it
        return f"{'*' * len(data)} ({n_bytes} B)"
    return f"{prefix}… ({n_bytes} B)"


def _parse_settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--setting expects KEY=VALUE, got {pair!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def _cmd_init(args: argparse.Namespace) -> int:
    from templar_jax.chain import ChainError, LocalChain

    path = pathlib.Path(args.path)
    if args.force:
        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(str(path) + suffix).unlink(missing_ok=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        chain = LocalChain.create(
            path,
            block_time=args.block_time,
            blocks_per_window=args.blocks_per_window,
            mode="manual" if args.manual else "clock",
            max_uids=args.max_uids,
            settings=_parse_settings(args.setting),
        )
    except ChainError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 1
    print(f"created {chain.mode} chain at {chain.path}: block time {chain.block_time:g} s, "
          f"{chain.blocks_per_window} blocks per window")
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from templar_jax.chain import ChainError, LocalChain

    try:
        chain = LocalChain(args.path)
        uid = chain.register(args.hotkey, args.stake)
        stake = chain.metagraph().stake_of(uid)
    except ChainError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 1
    print(f"hotkey {args.hotkey} -> uid {uid} (stake {stake:g})")
    return 0


def _cmd_advance(args: argparse.Namespace) -> int:
    from templar_jax.chain import ChainError, LocalChain

    try:
        chain = LocalChain(args.path)
        head = chain.advance(args.blocks)
    except (ChainError, ValueError) as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 1
    print(f"block {head} (window {chain.window_of(head)})")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from templar_jax.chain import ChainError, LocalChain

    try:
        chain = LocalChain(args.path)
        mg = chain.metagraph()
        commits = chain.commitments_with_blocks()
        weights = chain.weights()
        weight_blocks = chain.weights_blocks()
    except ChainError as exc:
        log.error("%s: %s", type(exc).__name__, exc)
        return 1
    if args.json:
        print(json.dumps(_status_dict(chain, mg, commits, weights), indent=2))
        return 0
    _print_tables(chain, mg, commits, weights, weight_blocks)
    return 0


def _status_dict(chain, mg, commits, weights) -> dict:
    return {
        "path": str(chain.path),
        "mode": chain.mode,
        "block": mg.block,
        "window": chain.window_of(mg.block),
        "block_time": chain.block_time,
        "blocks_per_window": chain.blocks_per_window,
        "leader_uid": mg.leader_uid,
        "settings": chain.settings,
        "neurons": [
            {
                "uid": uid, "hotkey": hk, "stake": st, "incentive": inc,
                "commitment": mask_commitment(commits[uid][0]) if uid in commits else None,
            }
            for uid, hk, st, inc in zip(mg.uids, mg.hotkeys, mg.stake, mg.incentive)
        ],
        "weights": {str(v): {str(u): w for u, w in row.items()} for v, row in weights.items()},
    }


def _print_tables(chain, mg, commits, weights, weight_blocks) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{chain.path}[/bold]  {chain.mode} mode, block time {chain.block_time:g} s, "
        f"{chain.blocks_per_window} blocks/window\n"
        f"block [bold]{mg.block}[/bold]  window [bold]{chain.window_of(mg.block)}[/bold]  "
        f"leader uid {mg.leader_uid if mg.leader_uid is not None else '-'}"
        + (f"\nsettings {json.dumps(chain.settings)}" if chain.settings else "")
    )
    neurons = Table(title=f"neurons ({mg.n})")
    for column in ("uid", "hotkey", "stake", "incentive", "commitment", "committed at"):
        numeric = column in ("uid", "stake", "incentive")
        neurons.add_column(column, justify="right" if numeric else "left")
    for uid, hk, st, inc in zip(mg.uids, mg.hotkeys, mg.stake, mg.incentive):
        data, block = commits.get(uid, (None, None))
        neurons.add_row(
            str(uid), hk + (" (leader)" if uid == mg.leader_uid else ""), f"{st:g}", f"{inc:.4f}",
            mask_commitment(data) if data is not None else "-",
            f"block {block}" if block is not None else "-",
        )
    console.print(neurons)
    table = Table(title="latest weights")
    table.add_column("validator uid", justify="right")
    table.add_column("set at")
    table.add_column("weights (uid: weight)")
    for v in sorted(weights):
        row = sorted(weights[v].items(), key=lambda uw: -uw[1])
        shown = ", ".join(f"{u}: {w:.3f}" for u, w in row[:12]) + (" …" if len(row) > 12 else "")
        table.add_row(str(v), f"block {weight_blocks.get(v, '?')}", shown)
    if weights:
        console.print(table)
    else:
        console.print("no weights set yet")
