"""Sort-free in-tile top-k (radix select + index tie-break) against the pure-JAX selection.

Runs the tile routine as plain jitted jnp (the same code the kernels run); equality is
bitwise for indices and values on random and adversarial tiles.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from templar_jax.sparseloco.codec import select_topk
from templar_jax.sparseloco.kernels.tile_select import (
    compact, exact_k_descent, exact_k_threshold_bits, kth_largest_bits, magnitude_bits, tile_topk)

_tile_topk = jax.jit(tile_topk, static_argnums=(1, 2, 3, 4))


def _tiles():
    rng = np.random.default_rng(7)
    nonfinite = rng.standard_normal((64, 64)).astype(np.float32)
    nonfinite[3, 4], nonfinite[5, 6] = np.inf, -np.inf
    nonfinite[7, 7], nonfinite[0, 1] = np.nan, -np.nan
    many_nan = np.full((64, 64), 1.0, np.float32)
    many_nan[::7, ::5] = np.nan
    top_ties = rng.standard_normal((64, 64)).astype(np.float32) * 0.01
    top_ties[rng.random((64, 64)) < 0.05] = -3.0  # ~200 entries tie for the top 64
    ties_below_top = rng.integers(-3, 4, (64, 64)).astype(np.float32)
    ties_below_top.reshape(-1)[rng.choice(4096, 20, replace=False)] = 5.0  # 20 above the ties
    return {
        "random": rng.standard_normal((64, 64)).astype(np.float32),
        "ties_below_top": ties_below_top,  # 44 of ~1170 tied entries fill the top 64
        "integer_ties": rng.integers(-3, 4, (64, 64)).astype(np.float32),
        "top_ties": top_ties,
        "zeros": np.zeros((64, 64), np.float32),
        "negative_zeros": np.where(rng.random((64, 64)) < 0.5, -0.0, 0.0).astype(np.float32),
        "smallest_denormals": (rng.integers(-5, 6, (64, 64))
                               * np.float32(1e-45)).astype(np.float32),
        "denormals": (rng.standard_normal((64, 64)) * np.float32(1e-39)).astype(np.float32),
        "constant": np.full((64, 64), -2.5, np.float32),
        "huge": np.full((64, 64), np.finfo(np.float32).max, np.float32) * np.sign(
            rng.standard_normal((64, 64))).astype(np.float32),
        "inf_nan": nonfinite,
        "many_nan": many_nan,
    }


@pytest.mark.parametrize("bf16,radix_bits,early", [
    (False, 1, False), (True, 1, False), (True, 2, False), (False, 3, False), (True, 1, True),
    (False, 2, True)], ids=["f32_dots", "bf16_dots", "bf16_radix2", "f32_radix3", "bf16_early",
                            "f32_radix2_early"])
@pytest.mark.parametrize("name,tile", list(_tiles().items()))
def test_tile_topk_equals_pure_jax_bitwise(name, tile, bf16, radix_bits, early):
    idx, vals = _tile_topk(jnp.asarray(tile), 64, bf16, radix_bits, early)
    ref_idx, ref_vals = select_topk(jnp.asarray(tile).reshape(1, 1, -1), 64)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx)[0, 0])
    np.testing.assert_array_equal(np.asarray(vals).view(np.int32),
                                  np.asarray(ref_vals)[0, 0].view(np.int32))
    assert np.all(np.diff(np.asarray(idx)) > 0)


@pytest.mark.parametrize("radix_bits,early", [(1, False), (2, False), (4, False), (1, True)])
@pytest.mark.parametrize("shape,k", [((8, 8), 2), ((50, 50), 50), ((1, 64), 64), ((64, 44), 64)])
def test_tile_topk_other_tiles_and_k(shape, k, radix_bits, early):
    x = np.random.default_rng(shape[0] * 100 + k).integers(-4, 5, shape).astype(np.float32)
    idx, vals = _tile_topk(jnp.asarray(x), k, False, radix_bits, early)
    ref_idx, ref_vals = select_topk(jnp.asarray(x).reshape(1, 1, -1), k)
    np.testing.assert_array_equal(np.asarray(idx), np.asarray(ref_idx)[0, 0])
    np.testing.assert_array_equal(np.asarray(vals), np.asarray(ref_vals)[0, 0])


@pytest.mark.parametrize("radix_bits", [1, 2, 3, 5])
def test_kth_largest_bits_is_the_kth_magnitude(radix_bits):
    x = np.random.default_rng(3).standard_normal(4096).astype(np.float32)
    bits = magnitude_bits(jnp.asarray(x))
    for k in (1, 64, 4096):
        t = int(kth_largest_bits(bits, k, radix_bits))
        expect = np.sort(np.abs(x))[::-1][k - 1]
        assert np.float32(np.int32(t).view(np.float32)) == expect


@pytest.mark.parametrize("radix_bits", [1, 2, 3, 4])
def test_exact_k_threshold_admits_exactly_k_or_is_the_kth_magnitude(radix_bits):
    """Distinct magnitudes: the early descent stops with exactly k entries >= t (t at or below
    the k-th magnitude, above the (k+1)-th). Ties across the k-th place: it cannot stop early
    and returns the k-th magnitude, as `kth_largest_bits`. Several bits per step: the same,
    including the narrower last step (31 bits are not a multiple of 2, 3 or 4)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(4096).astype(np.float32)
    bits = magnitude_bits(jnp.asarray(x))
    desc = np.sort(np.asarray(bits))[::-1]
    for k in (1, 64, 4095):
        t = int(exact_k_threshold_bits(bits, k, radix_bits))
        assert np.count_nonzero(np.asarray(bits) >= t) == k
        assert desc[k] < t <= desc[k - 1]
    ties = magnitude_bits(jnp.asarray(rng.integers(-3, 4, 4096).astype(np.float32)))
    for k in (64, 4096):
        assert int(exact_k_threshold_bits(ties, k, radix_bits)) == int(kth_largest_bits(ties, k))
    # each bit pattern twice, consecutive patterns: the k-th and (k+1)-th magnitudes differ in
    # the lowest bits or tie, so the narrow last step decides them (k = 57..64 puts every pair
    # of low bits, tied or not, at the k-th place)
    pairs = 0x3F800000 + np.arange(4096, dtype=np.int32) // 2
    for k in range(57, 65):
        t = int(exact_k_threshold_bits(jnp.asarray(pairs), k, radix_bits))
        kth = np.sort(pairs)[::-1][k - 1]
        assert np.count_nonzero(pairs >= t) == k or t == kth, (k, t - 0x3F800000)
        assert np.count_nonzero(pairs >= t) >= k


@pytest.mark.parametrize("radix_bits,lo,hi,all_steps", [(1, 12, 20, 31), (2, 6, 11, 16)])
def test_early_descent_stops_about_halfway_on_float_tiles(radix_bits, lo, hi, all_steps):
    """The point of the early exit: on Gaussian tiles (2000 of them: mean 16.3 of 31 steps at
    one bit per step) the descent stops near bit 15; at two bits per step in about half as
    many steps. Tiles of small integers tie across the k-th place and run every step."""
    rng = np.random.default_rng(5)
    descent = jax.jit(jax.vmap(lambda x: exact_k_descent(magnitude_bits(x), 64, radix_bits)[1]))
    steps = np.asarray(descent(jnp.asarray(rng.standard_normal((64, 64, 64)), jnp.float32)))
    assert lo <= steps.mean() <= hi and steps.max() <= all_steps
    ints = jnp.asarray(rng.integers(-3, 4, (4, 64, 64)), jnp.float32)
    assert np.all(np.asarray(descent(ints)) == all_steps)


def test_magnitude_bits_order_matches_abs_order():
    vals = np.array([0.0, -0.0, 1e-45, -1e-44, 1e-38, -1.0, 2.0, np.inf, -np.inf, np.nan],
                    np.float32)
    bits = np.asarray(magnitude_bits(jnp.asarray(vals)))
    assert bits[0] == bits[1] == 0
    assert bits[2] < bits[3] < bits[4] < bits[5] < bits[6] < bits[7] == bits[8] < bits[9]


@pytest.mark.parametrize("bf16", [False, True], ids=["f32_dots", "bf16_dots"])
@pytest.mark.parametrize("h,w,full_rows", [(64, 64, 0), (16, 32, 1)])
def test_compact_returns_selected_entries_in_row_major_order(h, w, full_rows, bf16):
    """Random selections (and one with a whole row selected), random int32 payload bits."""
    rng = np.random.default_rng(h + full_rows)
    sel = np.zeros((h, w), bool)
    sel[:full_rows] = True
    sel.reshape(-1)[rng.choice(np.arange(full_rows * w, h * w), 40, replace=False)] = True
    bits = rng.integers(-2**31, 2**31 - 1, (h, w), dtype=np.int64).astype(np.int32)
    k = int(sel.sum())
    idx, got_bits = compact(jnp.asarray(sel), jnp.asarray(bits), k, bf16)
    np.testing.assert_array_equal(np.asarray(idx), np.flatnonzero(sel))
    np.testing.assert_array_equal(np.asarray(got_bits), bits.reshape(-1)[sel.reshape(-1)])


@pytest.mark.parametrize("density", [0.0, 0.02, 0.5, 1.0])
def test_row_major_ranks_count_the_selected_entries_before(density):
    from templar_jax.sparseloco.kernels.tile_select import row_major_ranks

    rng = np.random.default_rng(int(density * 100))
    sel = rng.random((16, 32)) < density
    flat = sel.reshape(-1).astype(np.int32)
    want = (np.cumsum(flat) - flat).reshape(sel.shape)
    np.testing.assert_array_equal(np.asarray(row_major_ranks(jnp.asarray(sel))), want)
