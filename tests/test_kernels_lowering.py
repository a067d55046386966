"""The kernels lower for the GPU (Triton) and TPU (Mosaic) backends without such a device:
cross-platform lowering on CPU runs Pallas' own Triton / Mosaic lowering rules, which reject
unsupported ops and block shapes. (Compiling that IR to a binary needs the device:
bench/device_check.sh.)"""

import contextlib

import jax
import jax.numpy as jnp
import pytest

from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.kernels.aggregate import scatter_mean_tiles
from templar_jax.sparseloco.kernels.aot import gpu_target
from templar_jax.sparseloco.kernels.compress import ef_select
from templar_jax.sparseloco.kernels.config import KernelConfig

_, GEOM = tensor_geometry((128, 512), 0)  # 2 x 8 tiles of 64x64
PLATFORMS = {"triton": ("cuda", 1), "mosaic_tpu": ("tpu", 8)}


def lower_text(fn, args, platform):
    """Lowered module text (for the GPU: an abstract H200, which jax 0.11 needs without one)."""
    target = gpu_target() if platform == "cuda" else contextlib.nullcontext()
    with target:
        return fn.trace(*args).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("radix_bits", [1, 2])
@pytest.mark.parametrize("select", ["full", "early"])
@pytest.mark.parametrize("backend", list(PLATFORMS))
def test_compress_kernel_lowers(backend, select, radix_bits):
    """Both radix-select modes (`early` adds a while loop and a cond) at one and two bits per
    step on both backends."""
    config = KernelConfig(backend=backend, select=select, radix_bits=radix_bits)
    platform, tiles = PLATFORMS[backend]
    e = jax.ShapeDtypeStruct((2, 128, 512), jnp.float32)
    fn = jax.jit(lambda e, d: ef_select(e, d, beta=0.95, geom=GEOM, config=config,
                                        tiles_per_block=tiles))
    text = lower_text(fn, (e, e), platform)
    assert "sparseloco_ef_topk" in text


@pytest.mark.parametrize("backend", list(PLATFORMS))
def test_aggregate_kernel_lowers(backend):
    platform, tiles = PLATFORMS[backend]
    idx = jax.ShapeDtypeStruct((32, 2, GEOM.num_chunks, 64), jnp.int32)
    vals = jax.ShapeDtypeStruct((32, 2, GEOM.num_chunks, 64), jnp.float32)
    config = KernelConfig(backend=backend, aggregate_tiles=tiles)
    fn = jax.jit(lambda i, v, n: scatter_mean_tiles(i, v, n, GEOM, rule="median_clip",
                                                    config=config))
    n = jax.ShapeDtypeStruct((), jnp.float32)
    text = lower_text(fn, (idx, vals, n), platform)
    assert "sparseloco_aggregate" in text


@pytest.mark.parametrize("coded", [False, True], ids=["decoded", "coded"])
@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_scatter_aggregate_kernel_lowers_for_triton(rule, coded):
    """The in-chunk scatter kernel is Triton-only (Mosaic TPU has no vector scatter), with
    decoded values or with codes and per-peer code tables."""
    from templar_jax.sparseloco.kernels.aggregate_scatter import Coded, scatter_sum_tiles

    shape = (32, 2, GEOM.num_chunks, 64)
    idx = jax.ShapeDtypeStruct(shape, jnp.int32)
    if coded:
        vals = Coded(jax.ShapeDtypeStruct(shape, jnp.uint8),
                     jax.ShapeDtypeStruct((32, 2, 4), jnp.float32))
    else:
        vals = jax.ShapeDtypeStruct(shape, jnp.float32)
    config = KernelConfig(backend="triton", aggregate="scatter", aggregate_tiles=2)
    fn = jax.jit(lambda i, v, n: scatter_sum_tiles(i, v, n, GEOM, rule=rule, config=config))
    n = jax.ShapeDtypeStruct((), jnp.float32)
    assert "sparseloco_aggregate_scatter" in lower_text(fn, (idx, vals, n), "cuda")


def test_scatter_compaction_lowers_for_triton():
    """The compression kernel with compact="scatter" (prefix sums + a masked pointer scatter) is
    Triton-only, like the scatter aggregation."""
    config = KernelConfig(backend="triton", compact="scatter")
    e = jax.ShapeDtypeStruct((2, 128, 512), jnp.float32)
    fn = jax.jit(lambda e, d: ef_select(e, d, beta=0.95, geom=GEOM, config=config,
                                        tiles_per_block=2))
    assert "sparseloco_ef_topk" in lower_text(fn, (e, e), "cuda")


@pytest.mark.parametrize("cut", ["ef", "select"])
def test_stage_cuts_lower_for_triton(cut):
    e = jax.ShapeDtypeStruct((2, 128, 512), jnp.float32)
    fn = jax.jit(lambda e, d: ef_select(e, d, beta=0.95, geom=GEOM,
                                        config=KernelConfig(backend="triton"),
                                        tiles_per_block=1, cut=cut))
    assert "sparseloco_ef_topk" in lower_text(fn, (e, e), "cuda")
