"""Render and (optionally) run the launchers' commands. Dry runs only print.

Commands are argv lists, never shell strings, on this machine; the remote side of an
ssh/gcloud command is one string built with `shlex.quote` for every interpolated value.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from dataclasses import dataclass
from typing import Callable, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One command with a short human description (printed as a comment in dry runs)."""

    what: str
    argv: tuple[str, ...]

    def render(self) -> str:
        return shlex.join(self.argv)


def step(what: str, *argv: str) -> Step:
    return Step(what, tuple(argv))


def remote_join(*parts: str) -> str:
    """Join remote shell fragments with `&&` (stop at the first failure)."""
    return " && ".join(p for p in parts if p)


def env_prefix(env: dict[str, str]) -> str:
    """`K=V K2=V2 ` with quoted values, for the front of a remote command."""
    return "".join(f"{k}={shlex.quote(v)} " for k, v in env.items())


def render_script(steps: Sequence[Step]) -> str:
    lines = []
    for s in steps:
        lines.append(f"# {s.what}")
        lines.append(s.render())
    return "\n".join(lines) + "\n"


def run_steps(
    steps: Sequence[Step],
    *,
    dry_run: bool,
    echo: Callable[[str], None] = print,
    runner: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> int:
    """Print (dry run) or execute each step in order; stop at the first non-zero exit."""
    if dry_run:
        echo(render_script(steps).rstrip("\n"))
        return 0
    for s in steps:
        log.info("%s: %s", s.what, s.render())
        rc = runner(list(s.argv)).returncode
        if rc != 0:
            log.error("step failed (exit %d): %s", rc, s.what)
            return rc
    return 0
