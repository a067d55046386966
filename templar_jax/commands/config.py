"""`templar-jax config`: show a resolved run config; write or check docs/run-config.md."""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("config", help="run configs: show one resolved, generate docs/run-config.md",
                       description="Run configs (templar_jax/configs/runs/*.yaml; keys in docs/run-config.md).")
    actions = p.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print a run config after overrides, every default filled in")
    show.add_argument("config", help="shipped run config name or a YAML path")
    show.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                      help="override a key (repeatable)")
    show.set_defaults(func=_show)
    docs = actions.add_parser("docs", help="print docs/run-config.md as generated from the dataclasses")
    mode = docs.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="write it to docs/run-config.md (repository root)")
    mode.add_argument("--check", action="store_true", help="exit 1 if docs/run-config.md is out of date")
    docs.add_argument("--path", default=None, help="docs file (default: docs/run-config.md in the cwd)")
    docs.set_defaults(func=_docs)


def _show(args) -> int:
    import yaml

    from templar_jax.config import RunConfigError, load_run_config

    try:
        cfg = load_run_config(args.config, args.overrides)
    except RunConfigError as err:
        print(f"templar-jax: {err}", file=sys.stderr)
        return 2
    print(yaml.safe_dump(cfg.to_dict(), sort_keys=False), end="")
    return 0


def _docs(args) -> int:
    from templar_jax.config.docs import DOCS_PATH, run_config_docs

    text = run_config_docs()
    path = Path(args.path or DOCS_PATH)
    if args.write:
        path.write_text(text)
        print(f"wrote {path}")
        return 0
    if args.check:
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date; run `templar-jax config docs --write`", file=sys.stderr)
            return 1
        print(f"{path} is current")
        return 0
    print(text, end="")
    return 0
