"""bench/kernel_resources.py: the sm_90 occupancy arithmetic, and Triton IR capture for each
kernel kind (the compile step needs the optional `triton` package and is not run here)."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "bench" / "kernel_resources.py"
_spec = importlib.util.spec_from_file_location("kernel_resources", _PATH)
kernel_resources = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kernel_resources)


@pytest.mark.parametrize("regs,smem,warps,ctas,limiter", [
    (232, 24576, 4, 2, "registers"),   # 232 -> 240 regs/thread: 30720 per CTA, 2 fit in 64K
    (48, 4096, 8, 5, "registers"),
    (24, 0, 4, 16, "warps"),           # 16 CTAs x 4 warps = the 64-warp limit
    (16, 0, 1, 32, "ctas"),
    (32, 100 * 1024, 4, 2, "shared"),  # 2 x (100 KB + 1 KB reserved) <= 228 KB
])
def test_occupancy_on_sm90(regs, smem, warps, ctas, limiter):
    occ = kernel_resources.occupancy(regs, smem, warps)
    assert occ == {"ctas_per_sm": ctas, "warps_per_sm": ctas * warps, "limiter": limiter}


def test_lowering_captures_one_triton_module_per_variant(tmp_path):
    args = argparse.Namespace(compress=["bf16:4:1:scatter"], cuts=["select:4"],
                              agg=["scatter:8:1", "onehot:4:1"])
    try:
        manifest = kernel_resources.lower_variants(args, str(tmp_path))
    except RuntimeError as exc:
        if "No supported GPU devices" in str(exc):
            pytest.skip("this jax lowers Triton kernels only on a GPU")
        raise
    errors = [m["error"] for m in manifest if "error" in m]
    if errors and all("No supported GPU devices" in e for e in errors):
        pytest.skip("this jax lowers Triton kernels only on a GPU")
    assert [m["kind"] for m in manifest] == ["compress", "compress_cut", "aggregate", "aggregate"]
    assert not errors
    names = ["sparseloco_ef_topk", "sparseloco_ef_topk", "sparseloco_aggregate_scatter",
             "sparseloco_aggregate"]
    for m, name in zip(manifest, names):
        text = Path(m["ttir"]).read_text()
        assert text.startswith(f"module @{name}") and "tt.func" in text
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
