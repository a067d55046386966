"""Both aggregation kernels (one-hot tiles and in-chunk scatter; interpret mode) equal
`aggregate_tensor` bitwise: both rules, batched tensors, overlapping selections, clipping,
non-finite peers dropped, fallback, several chunks per program, more than 127 peers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernel_test_config import BACKEND, kernel_config
from templar_jax.sparseloco import AggregationError, aggregate_tensor, compress_tensor

SHAPE = (2, 128, 192)


def bits(a):
    return np.asarray(a).view(np.int32)


def assert_same(got, want, rule="median_clip"):
    """Bitwise. On a device, median_clip's peer norms are reduced in the device's order, not the
    CPU reference's, so there the clip factors (and results) may differ in the last bits."""
    if BACKEND != "interpret" and rule == "median_clip":
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-6,
                                   atol=1e-7 * np.abs(np.asarray(want)).max())
    else:
        np.testing.assert_array_equal(bits(got), bits(want))


def reference(*args, **kwargs):
    """`aggregate_tensor` on the CPU, where its scatter-add sums peers in order 0..R-1 (the
    kernel's order; a GPU's scatter-add atomics add them in any order, run to run)."""
    with jax.default_device(jax.devices("cpu")[0]):
        return aggregate_tensor(*args, **kwargs)


@pytest.fixture(autouse=True, params=["onehot", "scatter"])
def agg_kernel(request):
    """Every test runs with each kernel (the choice is a static argument of the jitted path)."""
    return request.param


def aggregate_tensor_pallas(payloads, shape, *, agg_kernel, tiles=0, **kwargs):
    """`aggregate_tensor` with the Pallas core and the `agg_kernel` aggregation kernel."""
    config = kernel_config(aggregate=agg_kernel, aggregate_tiles=tiles)
    return aggregate_tensor(payloads, shape, impl="pallas", kernel=config, **kwargs)


@pytest.fixture(scope="module")
def peers():
    """5 peers whose selections overlap heavily (shared structure) at very different norms."""
    rng = np.random.default_rng(21)
    common = rng.standard_normal(SHAPE).astype(np.float32) * 3
    return [compress_tensor(common + rng.standard_normal(SHAPE).astype(np.float32) * (i + 1),
                            batch_ndim=1) for i in range(5)]


@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_equals_pure_jax_bitwise(peers, rule, agg_kernel):
    got = aggregate_tensor_pallas(peers, SHAPE, rule=rule, batch_ndim=1, agg_kernel=agg_kernel)
    want = reference(peers, SHAPE, rule=rule, batch_ndim=1)
    assert got.shape == SHAPE and got.dtype == jnp.float32
    assert_same(got, want, rule)
    idx = np.stack([np.asarray(p.idx) for p in peers])
    assert len(np.unique(idx)) < idx.size, "selections overlap, so the per-coordinate mean matters"
    assert np.count_nonzero(np.asarray(got)) > 0


def test_single_peer_and_non_64_tile(agg_kernel):
    rng = np.random.default_rng(22)
    shape = (100, 50)  # 50x50 tiles
    ps = [compress_tensor(rng.standard_normal(shape).astype(np.float32)) for _ in range(3)]
    for group in (ps[:1], ps):
        got = aggregate_tensor_pallas(group, shape, agg_kernel=agg_kernel)
        assert_same(got, reference(group, shape))


def test_non_finite_peer_is_dropped_from_that_reference_tensor(peers, agg_kernel):
    """A peer whose layer 1 decodes to inf drops out of layer 1 only (it used to skip the layer
    for every peer); with no peer left in a layer, the "mean" rule's 0/0 skips that layer."""
    bad = peers[2]._replace(lut=np.asarray(peers[2].lut).copy())
    bad.lut[1, 3] = np.inf  # layer 1 of one peer decodes to inf somewhere
    group = [peers[0], peers[1], bad]
    got = np.asarray(aggregate_tensor_pallas(group, SHAPE, batch_ndim=1, agg_kernel=agg_kernel,
                                             rule="mean"))
    want = np.asarray(reference(group, SHAPE, batch_ndim=1, rule="mean"))
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    honest = np.asarray(reference(peers[:2], SHAPE, batch_ndim=1, rule="mean"))
    np.testing.assert_array_equal(got[1].view(np.int32), honest[1].view(np.int32))
    assert np.count_nonzero(got[1]) > 0 and np.count_nonzero(got[0]) > 0
    got = np.asarray(aggregate_tensor_pallas([bad, bad], SHAPE, batch_ndim=1,
                                             agg_kernel=agg_kernel, rule="mean"))
    assert np.all(got[1] == 0) and np.count_nonzero(got[0]) > 0


def test_out_of_range_code_drops_the_peer_from_the_tensor(peers, agg_kernel):
    """A code past the LUT decodes to NaN in the pure path (take_along_axis fills), so that
    peer's norm is NaN and it drops out of that reference tensor; the scatter kernel decodes
    codes itself and must agree."""
    bad = peers[1]._replace(codes=np.asarray(peers[1].codes).copy())
    bad.codes[0, 2, 5] = 9
    group = [peers[0], bad, peers[2]]
    for rule in ("median_clip", "mean"):
        got = np.asarray(aggregate_tensor_pallas(group, SHAPE, rule=rule, batch_ndim=1,
                                                 agg_kernel=agg_kernel))
        assert_same(got, reference(group, SHAPE, rule=rule, batch_ndim=1), rule)
        honest = reference([peers[0], peers[2]], SHAPE, rule=rule, batch_ndim=1)
        assert_same(got[0], honest[0], rule)
        assert np.count_nonzero(got[0]) > 0 and np.count_nonzero(got[1]) > 0


def test_fallback_1d_and_errors(peers, agg_kernel):
    rng = np.random.default_rng(23)
    ps = [compress_tensor(rng.standard_normal((2, 256)).astype(np.float32), batch_ndim=1)
          for _ in range(3)]
    got = aggregate_tensor_pallas(ps, (2, 256), batch_ndim=1, agg_kernel=agg_kernel)
    if BACKEND == "interpret":
        assert_same(got, reference(ps, (2, 256), batch_ndim=1))
    else:  # the fallback is the device's own pure path. On an H200 it differed from the CPU
        # reference by up to 9.3e-5 relative: single-peer values by ~4e-6 (the norms' sums of
        # squares reduce in another order), magnified where peers' values cancel
        want = np.asarray(aggregate_tensor(ps, (2, 256), batch_ndim=1))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    with pytest.raises(AggregationError, match="unknown aggregation rule"):
        aggregate_tensor_pallas(peers, SHAPE, rule="median", batch_ndim=1, agg_kernel=agg_kernel)
    with pytest.raises(AggregationError, match="at least one"):
        aggregate_tensor_pallas([], SHAPE, batch_ndim=1, agg_kernel=agg_kernel)


def test_per_shard_aggregation_equals_pure_sharded_and_unsharded(agg_kernel):
    import jax
    from jax.sharding import PartitionSpec as P

    from templar_jax.sparseloco import aggregate_tensor_sharded
    from templar_jax.sparseloco.sharded import plan_shards

    if jax.device_count() < 8:
        pytest.skip("needs the 8 fake CPU devices of tests/conftest.py")
    mesh = jax.make_mesh((2, 2, 2), ("data", "fsdp", "tensor"),
                         axis_types=(jax.sharding.AxisType.Auto,) * 3)
    shape = (2, 128, 256)  # local blocks of 64 x 128: whole chunks on every device
    rng = np.random.default_rng(24)
    peers = [compress_tensor(rng.standard_normal(shape).astype(np.float32), batch_ndim=1)
             for _ in range(3)]
    plan = plan_shards(shape, P(None, "fsdp", "tensor"), mesh, 1)
    assert plan is not None and plan.tensor_axes == ("fsdp", "tensor")
    got = aggregate_tensor_sharded(peers, shape, plan=plan, mesh=mesh, impl="pallas",
                                   kernel=kernel_config(aggregate=agg_kernel))
    assert got.sharding.spec == plan.spec
    want = aggregate_tensor_sharded(peers, shape, plan=plan, mesh=mesh)
    np.testing.assert_array_equal(bits(got), bits(want))
    # unsharded: the peer norms are summed in another order, so the clip factors differ in the
    # last bits (cancellation in the per-coordinate mean can magnify that for small results)
    unsharded = np.asarray(aggregate_tensor(peers, shape, batch_ndim=1))
    np.testing.assert_allclose(np.asarray(got), unsharded, rtol=1e-6,
                               atol=1e-6 * np.abs(unsharded).max())


def test_bf16_split_is_exact():
    """hi + mid + lo == v bitwise for |v| >= 2^-100 (lo then stays a normal number; below that a
    flush-to-zero may drop v's last bits, an absolute error under 1e-37) and for +0."""
    from templar_jax.sparseloco.kernels.aggregate import split_bf16
    rng = np.random.default_rng(24)
    v = np.concatenate([rng.standard_normal(4000) * 10.0 ** rng.integers(-29, 37, 4000),
                        [0.0, 1.0, -1.0, 3.0e38, -2.0 ** -100]]).astype(np.float32)
    hi, mid, lo = split_bf16(jnp.asarray(v))
    back = (hi.astype(jnp.float32) + mid.astype(jnp.float32)) + lo.astype(jnp.float32)
    np.testing.assert_array_equal(np.asarray(back).view(np.int32), v.view(np.int32))


@pytest.mark.parametrize("tiles", [2, 4])
def test_several_chunks_per_program(peers, tiles, agg_kernel):
    """Blocks of several chunks (the scatter kernel's column offsets, per-block bad counts)."""
    for rule in ("median_clip", "mean"):
        got = aggregate_tensor_pallas(peers, SHAPE, rule=rule, batch_ndim=1, agg_kernel=agg_kernel,
                                      tiles=tiles)
        assert_same(got, reference(peers, SHAPE, rule=rule, batch_ndim=1), rule)


def test_more_than_127_peers_use_wide_counts(agg_kernel):
    """130 peers (bucket 256): the scatter kernel's per-coordinate counts switch to int32."""
    from templar_jax.sparseloco.kernels.aggregate_scatter import counts_dtype
    from templar_jax.wire.synthetic import random_sorted_indices

    assert counts_dtype(127) == jnp.int8 and counts_dtype(256) == jnp.int32
    shape = (64, 64)
    rng = np.random.default_rng(25)
    proto = compress_tensor(rng.standard_normal(shape).astype(np.float32))
    # 130 peers on the same 64 coordinates: every count is 130, past int8 (an overflow would
    # zero them); the other 4032 get nothing
    ps = [proto._replace(idx=random_sorted_indices(rng, 1, 64, 64), shift=np.float32(i * 1e-3))
          for i in range(130)]
    got = aggregate_tensor_pallas(ps, shape, agg_kernel=agg_kernel)
    assert_same(got, reference(ps, shape))
    assert np.count_nonzero(np.asarray(got)) == 64
