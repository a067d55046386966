"""Fused EF + top-k Pallas kernel (interpret mode) equals the pure-JAX compression bitwise:
indices, codes, quantizer side data and the new error-feedback buffer, on random and
adversarial chunks, batched tensors, non-64 tiles, multi-tile blocks and per shard, with
each compaction (one-hot matmuls or scatter to row-major ranks) and the early-exit select."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from kernel_test_config import kernel_config
from templar_jax.sparseloco.compress import ef_compress_tensor
from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.kernels.backend import unsupported_reason
from templar_jax.sparseloco.kernels.compress import ef_compress_tensor_pallas, ef_select
from templar_jax.sparseloco.sharded import compress_on_shards, plan_shards

BETA = 0.95


@pytest.fixture(autouse=True, params=["onehot:full", "scatter:full", "scatter:early"])
def config(request):
    """Every test runs with each compaction, and the early-exit select (part of the config, a
    static argument: each variant traces its own kernel)."""
    compact, select = request.param.split(":")
    return kernel_config(compact=compact, select=select)


def adversarial_layers(rng):
    """[3, 128, 256]: layer 0 Gaussian; layer 1 one pattern per 64x64 chunk; layer 2 inf/nan."""
    x = rng.standard_normal((3, 128, 256)).astype(np.float32)
    patterns = [
        rng.integers(-3, 4, (64, 64)).astype(np.float32),                  # heavy ties
        np.zeros((64, 64), np.float32),                                    # all zero
        np.where(rng.random((64, 64)) < 0.5, -0.0, 0.0).astype(np.float32),  # signed zeros
        (rng.integers(-5, 6, (64, 64)) * np.float32(1e-45)).astype(np.float32),  # denormals
        np.full((64, 64), 0.75, np.float32),                               # constant chunk
        (rng.standard_normal((64, 64)) * 1e-39).astype(np.float32),        # denormal noise
        np.where(rng.random((64, 64)) < 0.05, -2.0, 0.001).astype(np.float32),  # ties at the top
        rng.standard_normal((64, 64)).astype(np.float32) * 1e30,           # huge
    ]
    for c, pat in enumerate(patterns):
        y, xx = divmod(c, 4)
        x[1, y * 64:(y + 1) * 64, xx * 64:(xx + 1) * 64] = pat
    x[2, 5, 7], x[2, 70, 200], x[2, 100, 3] = np.inf, -np.inf, np.nan
    return x


def run_both(e, d, geom, config, **kw):
    kernel = jax.jit(lambda e, d: ef_compress_tensor_pallas(
        e, d, beta=BETA, geom=geom, config=config, **kw))
    pure = jax.jit(lambda e, d: ef_compress_tensor(e, d, beta=BETA, geom=geom))
    return kernel(e, d), pure(e, d)


def assert_bitwise(got, want):
    (pk, ek), (pr, er) = got, want
    for field in pk._fields:
        a, b = np.asarray(getattr(pk, field)), np.asarray(getattr(pr, field))
        assert a.shape == b.shape and a.dtype == b.dtype, field
        np.testing.assert_array_equal(a.reshape(-1).view(np.uint8), b.reshape(-1).view(np.uint8),
                                      err_msg=field)
    assert ek.shape == er.shape and ek.dtype == er.dtype
    np.testing.assert_array_equal(np.asarray(ek).view(np.int32), np.asarray(er).view(np.int32))


@pytest.fixture(scope="module")
def adversarial():
    rng = np.random.default_rng(11)
    e = jnp.asarray(adversarial_layers(rng))
    d = jnp.asarray(rng.standard_normal(e.shape).astype(np.float32))
    _, geom = tensor_geometry(e.shape, 1)
    return e, d, geom


def test_adversarial_batched_tensor_bitwise(adversarial, config):
    e, d, geom = adversarial
    got, want = run_both(e, d, geom, config)
    assert_bitwise(got, want)
    payload, new_e = got
    assert np.asarray(payload.idx).shape == (3, 8, 64)
    assert np.all(np.isfinite(np.asarray(payload.scale)))  # nan layer falls back to scale 1
    # residual really is e minus the decoded payload on the selected coordinates
    assert not np.array_equal(np.asarray(new_e[0]), np.asarray(BETA * e[0] + d[0]))


def test_zero_delta_pure_topk_ties(adversarial, config):
    """beta=0.95 with delta=0 keeps the adversarial chunks' exact ties in play."""
    e, _, geom = adversarial
    assert_bitwise(*run_both(e, jnp.zeros_like(e), geom, config))


def test_two_tiles_per_block_and_non_64_tiles(config):
    rng = np.random.default_rng(12)
    e = jnp.asarray(rng.standard_normal((64, 256)).astype(np.float32))
    d = jnp.asarray(rng.integers(-2, 3, (64, 256)).astype(np.float32))
    _, geom = tensor_geometry(e.shape, 0)
    assert_bitwise(*run_both(e, d, geom, config, tiles_per_block=2))
    e2 = jnp.asarray(rng.standard_normal((100, 50)).astype(np.float32))  # tile 50x50
    _, geom2 = tensor_geometry(e2.shape, 0)
    assert geom2.tile == (50, 50)
    assert_bitwise(*run_both(e2, e2 * 0.5, geom2, config))


def test_fallback_for_1d_and_non_f32(config):
    rng = np.random.default_rng(13)
    _, geom = tensor_geometry((2, 256), 1)
    assert unsupported_reason(geom, jnp.float32, "interpret", 1) is not None
    e = jnp.asarray(rng.standard_normal((2, 256)).astype(np.float32))
    assert_bitwise(*run_both(e, e, geom, config))
    _, geom2 = tensor_geometry((64, 64), 0)
    assert "float32" in unsupported_reason(geom2, jnp.bfloat16, "triton", 1)
    assert unsupported_reason(geom2, jnp.float32, "triton", 1) is None
    _, geom3 = tensor_geometry((100, 50), 0)
    assert "powers of two" in unsupported_reason(geom3, jnp.float32, "triton", 1)


def test_per_shard_under_shard_map_equals_unsharded(config):
    if jax.device_count() < 8:
        pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    shape, spec = (2, 128, 256), P(None, "fsdp", "tensor")
    plan = plan_shards(shape, spec, mesh, 1)
    assert plan is not None and plan.local_geom.grid == (1, 2)
    rng = np.random.default_rng(14)
    e = rng.standard_normal(shape).astype(np.float32)
    d = rng.standard_normal(shape).astype(np.float32)
    sh = NamedSharding(mesh, spec)
    got = jax.jit(lambda e, d: compress_on_shards(
        ef_compress_tensor_pallas, e, d, plan=plan, mesh=mesh, check_vma=False, beta=BETA,
        config=config))(jax.device_put(e, sh), jax.device_put(d, sh))
    _, geom = tensor_geometry(shape, 1)
    want = jax.jit(lambda e, d: ef_compress_tensor(e, d, beta=BETA, geom=geom))(e, d)
    # idx/codes/residual are exact; the psum'ed statistics may round differently from the
    # unsharded sum, exactly as for the pure-JAX sharded path.
    np.testing.assert_array_equal(np.asarray(got[0].idx), np.asarray(want[0].idx))
    np.testing.assert_allclose(np.asarray(got[0].shift), np.asarray(want[0].shift), rtol=1e-5,
                               atol=1e-7)
    np.testing.assert_allclose(np.asarray(got[0].lut), np.asarray(want[0].lut), rtol=1e-5)
    same = np.asarray(got[0].codes) == np.asarray(want[0].codes)
    assert same.mean() > 0.999
    np.testing.assert_allclose(np.asarray(got[1]), np.asarray(want[1]), rtol=1e-5, atol=1e-6)


def test_backend_names():
    from templar_jax.sparseloco.kernels.config import KernelConfigError, resolve_backend
    expect = {"gpu": "triton", "tpu": "mosaic_tpu"}.get(jax.default_backend(), "interpret")
    assert resolve_backend("auto") == expect
    assert resolve_backend("triton") == "triton"
    with pytest.raises(KernelConfigError, match="unknown Pallas backend 'cuda'"):
        resolve_backend("cuda")


def test_stage_cuts_stop_where_they_say(config):
    """bench/compress.py's stage profile: "ef" writes only the EF update, "select" also the
    size of each tile's top-k mask (k); an unknown cut is a clear error."""
    rng = np.random.default_rng(15)
    e = jnp.asarray(rng.standard_normal((1, 64, 128)).astype(np.float32))
    d = jnp.asarray(rng.standard_normal((1, 64, 128)).astype(np.float32))
    _, geom = tensor_geometry((64, 128), 0)
    full_acc, full_idx, _ = ef_select(e, d, beta=BETA, geom=geom, config=config,
                                      tiles_per_block=1)
    for cut in ("ef", "select"):
        acc, idx, _ = ef_select(e, d, beta=BETA, geom=geom, config=config, tiles_per_block=1,
                                cut=cut)
        np.testing.assert_array_equal(np.asarray(acc), np.asarray(full_acc))
    assert np.all(np.asarray(idx) == geom.k) and not np.all(np.asarray(full_idx) == geom.k)
    with pytest.raises(ValueError, match="stage cut"):
        ef_select(e, d, beta=BETA, geom=geom, config=config, tiles_per_block=1, cut="all")
