"""bench/plan_vs_xla.py on the 150m preset: the miner's three programs lower and compile from
abstract shapes on 8 fake devices, and the planner's bytes are within 15% of XLA's
memory_analysis for each (the 72B comparison is the bench's own run, too slow for a test)."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "bench" / "plan_vs_xla.py"
_spec = importlib.util.spec_from_file_location("bench_plan_vs_xla", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_150m_programs_match_the_plan():
    rows = bench.run("150m", "fsdp=8", micro_batch=1, seq_len=512, remat="full", only=None)
    assert [r["program"] for r in rows] == ["train", "compress", "outer"]
    for r in rows:
        x = r["xla"]
        assert x["peak"] == x["argument"] + x["output"] - x["alias"] + x["temp"] > 0
        assert abs(r["ratio"] - 1) <= bench.TOLERANCE, r
    train, compress, outer = rows
    assert train["xla"]["alias"] > 0 and compress["xla"]["alias"] == 0  # the inner step donates
    assert abs(outer["plan"] - (outer["xla"]["argument"] + outer["xla"]["output"])) < 1000  # 3 fp32 trees
    assert "plan/xla" in bench.table(rows)
