"""A discrete-event simulator of the network (issue 21): P peers of a model on given links,
window by window on the chain's clock, with the protocol's timing rules, churn, stragglers,
failed uploads and the overlap option; calibrated on this project's own measurements.

It imports the wire size tables, the run config, the protocol's timing constants and the storage
transfer defaults, never the neurons (they model the same protocol and share protocol/timing.py's
window margins).
"""

from pathlib import Path

from templar_jax.netsim.build import payload_size, scenario_from_config, with_inner_steps
from templar_jax.netsim.calibrate import calibrate
from templar_jax.netsim.calibration import (
    FIGURES, CalibrationError, Figure, StageCosts, costs_from_dict, load_costs, save_costs)
from templar_jax.netsim.engine import PeerWindow, SimResult, simulate
from templar_jax.netsim.gantt import gantt_png
from templar_jax.netsim.measured import compare, measured_summary, miner_windows
from templar_jax.netsim.report import bottleneck, jsonl, summary, utilization, write_jsonl
from templar_jax.netsim.scenario import (
    ASSUMPTIONS, Churn, Faults, Links, Overlap, Scenario, ScenarioError, StampRule, Store, Timing, Work, mbit)
from templar_jax.netsim.validate import demo_scenario, validate_run
from templar_jax.netsim.whatif import markdown, whatif

def packaged_calibration(name: str) -> Path:
    """A calibration file shipped in templar_jax/netsim/data/ (e.g. covenant-72b)."""
    path = Path(__file__).parent / "data" / f"{name}.yaml"
    if not path.exists():
        raise CalibrationError(f"no packaged calibration {name!r} in {path.parent}")
    return path


__all__ = [
    "ASSUMPTIONS", "FIGURES", "CalibrationError", "Churn", "Faults", "Figure", "Links", "Overlap",
    "PeerWindow", "Scenario", "ScenarioError", "SimResult", "StageCosts", "StampRule", "Store", "Timing", "Work",
    "bottleneck", "calibrate", "compare", "costs_from_dict", "gantt_png", "jsonl", "load_costs", "markdown",
    "mbit", "measured_summary", "miner_windows", "packaged_calibration", "payload_size", "save_costs",
    "scenario_from_config", "simulate", "summary", "utilization", "validate_run", "demo_scenario", "whatif",
    "with_inner_steps", "write_jsonl",
]
