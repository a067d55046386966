"""`templar-jax demo`: the local network on embedded defaults, end to end."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.live import Live

from templar_jax.dashboard import DashboardServer
from templar_jax.demo import network as netmod
from templar_jax.demo.monitor import build_table, progress_line
from templar_jax.demo.report import collect, write_report
from templar_jax.events import read_all_events
from templar_jax.config import load_run_config

log = logging.getLogger(__name__)


def run_demo(*, run_dir: Path, config: str, overrides: list[str], windows: int, honest: int, copiers: int,
             noise: int, corrupt: int, resume: bool, timeout_s: float, live: bool | None = None,
             dashboard_port: int | None = None, adversaries: Sequence[str] = ()) -> int:
    console = Console()
    # the dashboard links each neuron's metrics endpoint (any free port, recorded in the run folder)
    overrides = list(overrides) + (["metrics.port=0"] if dashboard_port is not None else [])
    settings = load_run_config(config, overrides)
    specs = netmod.plan_neurons(honest, copiers, noise, corrupt, adversaries)
    net = netmod.Network(run_dir=run_dir, config=config, overrides=overrides, windows=windows, neurons=specs)
    console.print(f"[bold]templar-jax demo[/]: {len(specs) - 1} miners + 1 validator, {windows} windows of "
                  f"{settings.run.blocks_per_window} x {settings.run.block_time_s:g} s blocks, model "
                  f"{settings.model.preset}, run folder {run_dir}")
    if settings.data.path == "bundled":
        from templar_jax.data import ensure_bundled_dataset

        with console.status("preparing the bundled corpus (first run only)"):
            ensure_bundled_dataset(seq_len=settings.data.seq_len)
    netmod.prepare(net, resume=resume)
    dashboard = DashboardServer(run_dir, port=dashboard_port).start() if dashboard_port is not None else None
    if dashboard is not None:
        console.print(f"dashboard: {dashboard.url}")
    with console.status("compiling the model, optimizer and compression programs (cached after the first run)"):
        t_warm = time.time()
        if netmod.warm_up(net) != 0:
            console.print(f"[red]warm-up failed; see {run_dir / 'logs' / 'warmup.log'}[/]")
            return 1
    console.print(f"programs ready in {time.time() - t_warm:.0f} s")
    netmod.create_chain(net, settings)
    (run_dir / "run_config.json").write_text(json.dumps({"config": config, "overrides": overrides}))
    behaviors = {i: s.behavior for i, s in enumerate(specs) if s.role == "miner"}
    t0 = time.time()
    netmod.start_all(net)
    live = console.is_terminal if live is None else live
    last_line = [None]

    def tick_plain():
        _, summary = build_table(run_dir, behaviors)
        line = progress_line(summary)
        if line and line != last_line[0]:
            console.print(line)
            last_line[0] = line

    try:
        if live:
            with Live(build_table(run_dir, behaviors)[0], console=console, refresh_per_second=2) as view:
                ok = netmod.wait_done(net, timeout_s=timeout_s,
                                      on_tick=lambda: view.update(build_table(run_dir, behaviors)[0]))
        else:
            ok = netmod.wait_done(net, timeout_s=timeout_s, on_tick=tick_plain, tick_s=2.0)
    except KeyboardInterrupt:
        ok = False
        console.print("interrupted; stopping the network")
    finally:
        netmod.stop_all(net)
        if dashboard is not None:
            dashboard.close()
            console.print(f"dashboard stopped; `templar-jax dashboard {run_dir}` serves it again")
    wall = time.time() - t0
    summary = collect(read_all_events(run_dir))
    done = len(summary["scores"])
    header = {"windows requested": windows, "windows scored": done, "wall time": f"{wall:.0f} s",
              "neurons": ", ".join(f"{s.hotkey} ({s.behavior if s.role == 'miner' else 'validator'})"
                                   for s in specs),
              "config": config, "exit": "ok" if ok else "incomplete"}
    report = write_report(run_dir, summary, header)
    table, _ = build_table(run_dir, behaviors)
    console.print(table)
    console.print(f"report: {report}  ({wall:.0f} s, {done} windows scored)")
    if not ok:
        console.print(f"[red]the validator did not finish cleanly; see {run_dir / 'logs'}[/]")
    return 0 if ok else 1


def main() -> int:  # pragma: no cover - convenience for `python -m templar_jax.demo.run`
    return run_demo(run_dir=Path("runs/demo"), config="demo", overrides=[], windows=12, honest=4, copiers=1,
                    noise=1, corrupt=0, resume=False, timeout_s=900)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
