"""bench/plan_vs_xla.py on the tiny preset: the miner's programs lower and compile from abstract
shapes on 8 fake devices, and the planner's bytes match XLA's memory_analysis for the inner
step and the outer step (the 72B comparison is the bench's own run, too slow for a test)."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "bench" / "plan_vs_xla.py"
_spec = importlib.util.spec_from_file_location("bench_plan_vs_xla", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_tiny_train_and_outer_step_match_the_plan():
    rows = bench.run("tiny", "fsdp=8", micro_batch=1, seq_len=128, remat="full", only=["train", "outer"])
    assert [r["program"] for r in rows] == ["train", "outer"]
    for r in rows:
        x = r["xla"]
        assert x["peak"] == x["argument"] + x["output"] - x["alias"] + x["temp"] > 0
        assert abs(r["ratio"] - 1) <= bench.TOLERANCE, r
    train, outer = rows
    assert train["xla"]["alias"] > 0  # params and AdamW state are donated
    assert outer["plan"] == outer["xla"]["argument"] + outer["xla"]["output"] - 88  # 3 fp32 trees
    assert "plan/xla" in bench.table(rows)
