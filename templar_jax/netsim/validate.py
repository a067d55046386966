"""Validation against reality: simulate a recorded local demo run (its run config, its number of
miners, file buckets on one shared host) and compare with what its event log measured."""

from __future__ import annotations

import json
from pathlib import Path

from templar_jax.config import load_run_config
from templar_jax.netsim.build import scenario_from_config
from templar_jax.netsim.calibration import StageCosts
from templar_jax.netsim.engine import simulate
from templar_jax.netsim.measured import compare, measured_summary, miner_windows, recorded_span
from templar_jax.netsim.report import summary
from templar_jax.netsim.scenario import Links, Scenario, Store

# File buckets on a local disk: no network; the calibration's store_request_s carries their cost.
LOCAL_DISK = Links(up_bps=8e9, down_bps=8e9, latency_s=0.0)
# beside a run whose trimmed events lost `gathered`: the payload counts it applied, with their source
APPLIED_FILE = "applied.json"


def demo_scenario(run_dir: str | Path) -> tuple[Scenario, int]:
    """The demo run in `run_dir` as a scenario over the windows its miners trained (simulated
    window 0 = the first), with the payload counts it applied; and how many leading windows
    are null rounds (left out of both sides of the comparison). Every miner and the validator
    share this one host: while miners train, the validator evaluates the previous window
    (miners + 1 busy); at the gather the miners aggregate and save at once while the
    validator waits on its reads (miners)."""
    run_dir = Path(run_dir)
    spec = json.loads((run_dir / "run_config.json").read_text())
    cfg = load_run_config(spec["config"], spec.get("overrides", []))
    miners = len(list((run_dir / "events").glob("miner-*.jsonl")))
    if not miners:
        raise FileNotFoundError(f"no miner event logs in {run_dir / 'events'}")
    span = recorded_span(run_dir / "events", run_dir / APPLIED_FILE)
    sc = scenario_from_config(cfg, links=LOCAL_DISK, peers=miners, windows=span.windows,
                              store=Store(egress_bps=8e9), processes_per_host=miners + 1,
                              exchange_processes_per_host=miners, applied=span.applied)
    return sc, span.null_rounds


def validate_run(run_dir: str | Path, costs: StageCosts) -> dict:
    """Predicted vs measured compute share and median phase times for a recorded demo run."""
    sc, null_rounds = demo_scenario(run_dir)
    predicted = summary(simulate(sc, costs), skip=null_rounds)
    measured = measured_summary(miner_windows(Path(run_dir) / "events"))
    return {"predicted": {"utilization": predicted["utilization"], "median_s": predicted["median_s"],
                          "median_landed_after_steps": predicted["median_landed_after_steps"]},
            "measured": measured, "error": compare(predicted, measured)}
