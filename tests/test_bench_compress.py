"""bench/compress.py's pick of the best kernel variant: only right results qualify, and the
targets are judged on a full 70B layer only."""

import importlib.util
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "bench" / "compress.py"
_spec = importlib.util.spec_from_file_location("bench_compress", _PATH)
bench_compress = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_compress)


def _row(step, impl, ms, **kw):
    return dict(step=step, impl=impl, ms=ms, device="H200", params=855_000_000, **kw)


def test_best_rows_skip_wrong_or_nondeterministic_variants():
    rows = [
        _row("compress", "floor", 3.0), _row("compress", "pure", 60.0),
        _row("compress", "kernel", 5.0, match=False, dots="bf16", num_warps=8),
        _row("compress", "kernel", 12.0, match=True, dots="bf16", num_warps=4, select="early",
             spec="bf16:4:1:onehot:early"),
        {"step": "compress", "impl": "kernel", "error": "lowering failed"},
        _row("aggregate", "agg_floor", 1.5), _row("aggregate", "agg_pure", 33.0),
        _row("aggregate", "agg_kernel", 4.0, match_ordered=True, deterministic=False,
             kernel="scatter", tiles=1),
        _row("aggregate", "agg_kernel", 9.0, match_ordered=True, deterministic=True,
             kernel="scatter", tiles=2, num_warps=8),
    ]
    comp, agg = bench_compress.best_rows(rows, full_layer=True)
    assert comp["ms"] == 12.0 and comp["variant"] == {"dots": "bf16", "num_warps": 4,
                                                      "select": "early"}
    assert comp["spec"] == "bf16:4:1:onehot:early"
    assert comp["x_faster_than_pure"] == 5.0 and comp["x_floor"] == 4.0
    assert comp["target_met"] is False and comp["target_device"] == "NVIDIA H200"
    assert agg["ms"] == 9.0 and agg["variant"]["tiles"] == 2 and agg["target_met"] is True
    assert all(b["target_met"] is None for b in bench_compress.best_rows(rows, full_layer=False))
    assert bench_compress.best_rows(rows[:2], full_layer=True) == []
