"""Sort-free top-k of one chunk tile, written with ops that Pallas lowers on GPU and TPU.

Everything here works on one (h, w) tile held in registers/VMEM and is called from kernel
bodies (it is also plain jnp, so it runs anywhere). Top-k by |x| with the lower-index tie rule:

1. `magnitude_bits`: the int32 bit pattern of |x| (sign bit cleared). For IEEE floats this
   order equals the |x| order, including denormals, with +0 == -0 and NaN above +inf.
2. `kth_largest_bits`: radix select, 31 count passes: the largest t with #(bits >= t) >= k,
   i.e. the k-th largest magnitude.
3. `topk_mask`: everything above t, plus the lowest-index entries equal to t (a 2nd radix
   select over the index, ceil(log2 S) count passes) so exactly k entries are chosen.
4. `exclusive_rank`: each element's position among the selected ones in row-major order,
   by two 0/1 matmuls (exact in any dot precision: integer counts <= 4096).
5. `compact`: out[j] = the selected element of rank j (a k-step loop of masked integer sums,
   exact for every bit pattern: values travel as int32 bits, so -0.0, NaN payloads and
   denormals survive untouched).
No sort, no cumsum, no gather/scatter, no slicing of loaded values.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

_ABS_MASK = 0x7FFFFFFF


def magnitude_bits(x_f32):
    """int32 bit pattern of |x| (monotone in |x|; NaN sorts above inf)."""
    return lax.bitcast_convert_type(x_f32, jnp.int32) & jnp.int32(_ABS_MASK)


def _count(mask):
    return jnp.sum(mask.astype(jnp.int32))


def kth_largest_bits(mag_bits, k: int):
    """Largest t such that at least k entries have bits >= t (31-step radix select)."""
    def step(i, t):
        cand = t | jnp.left_shift(jnp.int32(1), jnp.int32(30) - i)
        return jnp.where(_count(mag_bits >= cand) >= k, cand, t)
    return lax.fori_loop(0, 31, step, jnp.int32(0))


def topk_mask(mag_bits, flat_idx, k: int):
    """Boolean mask of exactly k entries: top-k magnitudes, ties to the lower flat index."""
    size = mag_bits.size
    t = kth_largest_bits(mag_bits, k)
    above = mag_bits > t
    tied = mag_bits == t
    need = k - _count(above)  # >= 1 by the definition of t
    index_bits = max(1, (size - 1).bit_length())

    def step(i, m):  # largest m with #(tied & idx < m) < need: the need-th tie sits at m
        cand = m | jnp.left_shift(jnp.int32(1), jnp.int32(index_bits - 1) - i)
        return jnp.where(_count(tied & (flat_idx < cand)) < need, cand, m)

    last_tie = lax.fori_loop(0, index_bits, step, jnp.int32(0))
    return above | (tied & (flat_idx <= last_tie))


def exclusive_rank(sel_hxw):
    """Row-major exclusive prefix count of a boolean (h, w) mask, as int32."""
    h, w = sel_hxw.shape
    sel = sel_hxw.astype(jnp.float32)
    hi = lax.Precision.HIGHEST
    rows_before_hxh = (lax.broadcasted_iota(jnp.int32, (h, h), 1)
                       < lax.broadcasted_iota(jnp.int32, (h, h), 0)).astype(jnp.float32)
    cols_before_wxw = (lax.broadcasted_iota(jnp.int32, (w, w), 0)
                       < lax.broadcasted_iota(jnp.int32, (w, w), 1)).astype(jnp.float32)
    before_rows_hx1 = jnp.sum(jnp.dot(rows_before_hxh, sel, precision=hi), axis=1, keepdims=True)
    within_row_hxw = jnp.dot(sel, cols_before_wxw, precision=hi)
    return (before_rows_hx1 + within_row_hxw).astype(jnp.int32)


def compact(sel_hxw, rank_hxw, flat_idx_hxw, bits_hxw, k: int):
    """(idx_K int32 ascending, bits_K int32) of the k selected entries, in rank order."""
    slots = lax.broadcasted_iota(jnp.int32, (k,), 0)

    def step(j, carry):
        idx_k, bits_k = carry
        hit = sel_hxw & (rank_hxw == j)
        idx_j = jnp.sum(jnp.where(hit, flat_idx_hxw, 0))
        bits_j = jnp.sum(jnp.where(hit, bits_hxw, 0))
        return (jnp.where(slots == j, idx_j, idx_k), jnp.where(slots == j, bits_j, bits_k))

    zeros = jnp.zeros((k,), jnp.int32)
    return lax.fori_loop(0, k, step, (zeros, zeros))


def tile_topk(x_hxw_f32, k: int):
    """Top-k of one float32 tile: (idx_K ascending row-major, values_K float32, bit-exact)."""
    h, w = x_hxw_f32.shape
    flat_idx = (lax.broadcasted_iota(jnp.int32, (h, w), 0) * w
                + lax.broadcasted_iota(jnp.int32, (h, w), 1))
    bits = lax.bitcast_convert_type(x_hxw_f32, jnp.int32)
    sel = topk_mask(bits & jnp.int32(_ABS_MASK), flat_idx, k)
    idx_k, bits_k = compact(sel, exclusive_rank(sel), flat_idx, bits, k)
    return idx_k, lax.bitcast_convert_type(bits_k, jnp.float32)
