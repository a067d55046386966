"""Sort-free top-k of one chunk tile, written with ops that Pallas lowers on GPU and TPU.

Everything here works on one (h, w) tile held in registers/VMEM and is called from kernel
bodies (it is also plain jnp, so it runs anywhere). Top-k by |x| with the lower-index tie rule:

1. `magnitude_bits`: the int32 bit pattern of |x| (sign bit cleared). For IEEE floats this
   order equals the |x| order, including denormals, with +0 == -0 and NaN above +inf.
2. `kth_largest_bits`: radix select, 31 count passes: the largest t with #(bits >= t) >= k,
   i.e. the k-th largest magnitude (with `radix_bits` r > 1: 31/r dependent steps of 2^r - 1
   independent counts each).
3. `topk_mask`: everything above t, plus the lowest-index entries equal to t (a 2nd radix
   select over the index, ceil(log2 S) count passes) so exactly k entries are chosen. With
   `early`, the descent (at any radix) stops once exactly k entries qualify and the index
   select runs only when some ties must be left out (`exact_k_threshold_bits`).
4. `compact`: out[j] = the selected element of row-major rank j, via row one-hots and small
   matmuls (a few tile passes instead of k; exact for every bit pattern: values travel as
   int32 bits in 16-bit halves, or bytes with bfloat16 dots, so -0.0, NaN payloads and
   denormals survive untouched).
No sort, no cumsum, no gather/scatter, no slicing of loaded values (a backend with scatter can
instead store each selected entry at its `row_major_ranks` slot). Per 64x64 tile: 31 + 12
count passes of the radix select (in 31 + 12 dependent steps, or 16 + 6 with radix_bits=2),
~6 passes and five 64x64x64 float32 matmuls (seven bf16 ones) for the compaction.
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


def _largest_passing(pred, nbits: int, radix_bits: int):
    """Largest t in [0, 2^nbits) with pred(t), for pred true on a prefix of the integers
    (pred(0) true). Greedy over bit groups from the top: with the higher bits fixed and the
    lower ones zero, pred holds for digits 1..D, so the group's digit is how many candidates
    pass. radix_bits > 1 evaluates 2^radix_bits - 1 independent counts per step instead of one,
    in nbits/radix_bits dependent steps instead of nbits (fewer serial reductions)."""
    def group(t, shift, width):
        if width == 1:  # one candidate: keep it if it passes (the form measured on the H200)
            cand = t | jnp.left_shift(jnp.int32(1), shift)
            return jnp.where(pred(cand), cand, t)
        digit = jnp.int32(0)
        for d in range(1, 1 << width):  # static: independent counts, summed
            cand = t | jnp.left_shift(jnp.int32(d), shift)
            digit = digit + pred(cand).astype(jnp.int32)
        return t | jnp.left_shift(digit, shift)

    width = min(radix_bits, nbits)
    steps, rest = divmod(nbits, width)
    def step(i, t):
        return group(t, jnp.int32(nbits - width) - i * width, width)

    t = lax.fori_loop(0, steps, step, jnp.int32(0))
    return group(t, jnp.int32(0), rest) if rest else t


def kth_largest_bits(mag_bits, k: int, radix_bits: int = 1):
    """Largest t such that at least k entries have bits >= t (radix select over 31 bits)."""
    return _largest_passing(lambda cand: _count(mag_bits >= cand) >= k, 31, radix_bits)


def exact_k_threshold_bits(mag_bits, k: int, radix_bits: int = 1):
    """A t with #(bits >= t) >= k from the greedy descent of `kth_largest_bits`, stopped as
    soon as exactly k entries reach a candidate: #(bits >= t) == k then, which is all a top-k
    mask needs (that t may sit below the k-th magnitude); otherwise t is the k-th magnitude.
    In float data the k-th and (k+1)-th magnitudes usually part well above the last bit, so
    fewer of the dependent steps run (`exact_k_descent` counts them)."""
    return exact_k_descent(mag_bits, k, radix_bits)[0]


def exact_k_descent(mag_bits, k: int, radix_bits: int = 1):
    """(t of `exact_k_threshold_bits`, dependent count steps it took).

    Each step fixes the next `radix_bits` bits from the top (the last step of 31 bits may be
    narrower) with 2^radix_bits - 1 independent counts, one per candidate digit d >= 1. The
    counts fall as d grows, so the digit is how many candidates reach k, and the descent is
    done when some candidate has exactly k: the chosen digit's count is then k as well (it is
    <= that candidate's count and >= k)."""
    r = radix_bits
    n_steps = -(-31 // r)

    def going(carry):
        i, _, done = carry
        return (i < n_steps) & (done == 0)

    def step(carry):
        i, t, _ = carry
        shift = jnp.int32(31) - (i + 1) * r
        width = jnp.int32(r) + jnp.minimum(shift, 0)  # < r only on the last step
        shift = jnp.maximum(shift, 0)
        digit, done = jnp.int32(0), jnp.int32(0)
        for d in range(1, 1 << r):  # static: independent counts
            n = _count(mag_bits >= (t | jnp.left_shift(jnp.int32(d), shift)))
            fits = jnp.int32(d) < jnp.left_shift(jnp.int32(1), width)
            digit = digit + ((n >= k) & fits).astype(jnp.int32)
            done = done | ((n == k) & fits).astype(jnp.int32)
        return i + 1, t | jnp.left_shift(digit, shift), done

    steps, t, _ = lax.while_loop(going, step, (jnp.int32(0), jnp.int32(0), jnp.int32(0)))
    return t, steps


def topk_mask(mag_bits, flat_idx, k: int, radix_bits: int = 1, early: bool = False):
    """Boolean mask of exactly k entries: top-k magnitudes, ties to the lower flat index.
    `early`: stop the descent once exactly k entries qualify, and skip the index select when
    every tie is needed (the usual case) -- fewer dependent steps, same mask."""
    size = mag_bits.size
    if early:
        t = exact_k_threshold_bits(mag_bits, k, radix_bits)
    else:
        t = kth_largest_bits(mag_bits, k, radix_bits)
    above = mag_bits > t
    tied = mag_bits == t
    need = k - _count(above)  # >= 1 by the definition of t
    index_bits = max(1, (size - 1).bit_length())

    def nth_tie():  # largest m with #(tied & idx < m) < need: the need-th tie sits at m
        return _largest_passing(lambda cand: _count(tied & (flat_idx < cand)) < need,
                                index_bits, radix_bits)

    if early:
        # the skip branch returns a computed value (size - 1, as need <= size), not a literal:
        # Triton's cond lowering can only yield values
        last_tie = lax.cond(_count(tied) == need, lambda m: m, lambda m: nth_tie(),
                            jnp.maximum(need, jnp.int32(size - 1)))
    else:
        last_tie = nth_tie()
    return above | (tied & (flat_idx <= last_tie))


def _prefix_matrices(h: int, w: int):
    """0/1 matrices: rows_before[r, r'] = r' < r and cols_before[c', c] = c' < c."""
    rows_before_hxh = (lax.broadcasted_iota(jnp.int32, (h, h), 1)
                       < lax.broadcasted_iota(jnp.int32, (h, h), 0)).astype(jnp.float32)
    cols_before_wxw = (lax.broadcasted_iota(jnp.int32, (w, w), 0)
                       < lax.broadcasted_iota(jnp.int32, (w, w), 1)).astype(jnp.float32)
    return rows_before_hxh, cols_before_wxw


def onehot_dot(a, b, bf16: bool):
    """a @ b for 0/1 `a`, exact when each output sums small integers (< 2^24 in all; each `b`
    entry < 256 when `bf16`) or a single nonzero product (any bf16-exact `b`). bf16=True runs
    on tensor cores / the MXU's native path; bf16=False is float32 at HIGHEST precision."""
    if bf16:
        return jnp.dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16),
                       preferred_element_type=jnp.float32)
    return jnp.dot(a, b, precision=lax.Precision.HIGHEST)


def _int_parts(bits_hxw, bf16: bool):
    """(shift, float part) pieces of int32 bits that `onehot_dot` carries exactly: 16-bit
    halves for float32 dots, bytes for bfloat16 dots (8 significant bits)."""
    width = 8 if bf16 else 16
    mask = jnp.int32((1 << width) - 1)
    return [(s, (lax.shift_right_logical(bits_hxw, jnp.int32(s)) & mask).astype(jnp.float32))
            for s in range(0, 32, width)]


def compact(sel_hxw, bits_hxw, k: int, bf16: bool = False):
    """(idx_K int32 ascending, bits_K int32) of the k selected entries of a tile, in row-major
    order, via row one-hots instead of k full-tile passes:

      slot j lies in row r when rowoff[r] <= j < rowoff[r] + rowcnt[r]   (one-hot RowSel_Kxh)
      RowSel @ sel, RowSel @ within-row-rank, RowSel @ bit pieces         (that row, per slot)
      its column is the one whose within-row rank is j - rowoff[r]
    RowSel has exactly one 1 per row and the other operands are small integers (bits travel in
    16-bit halves, or bytes for bf16 dots), so every product sum is exact (`onehot_dot`).
    """
    h, w = sel_hxw.shape
    sel = sel_hxw.astype(jnp.float32)
    rows_before_hxh, cols_before_wxw = _prefix_matrices(h, w)
    within_hxw = onehot_dot(sel, cols_before_wxw, bf16)     # exclusive rank within row (< w)
    rowcnt_h = jnp.sum(sel, axis=1)
    rowoff_h = jnp.sum(rows_before_hxh * rowcnt_h[None, :], axis=1)
    rowend_h = rowoff_h + rowcnt_h
    slot_Kx1 = lax.broadcasted_iota(jnp.int32, (k, 1), 0).astype(jnp.float32)
    in_row_Kxh = (rowoff_h[None, :] <= slot_Kx1) & (slot_Kx1 < rowend_h[None, :])
    row_sel_Kxh = in_row_Kxh.astype(jnp.float32)
    target_K = slot_Kx1[:, 0] - jnp.sum(jnp.where(in_row_Kxh, rowoff_h[None, :], 0.0), axis=1)
    sel_row_Kxw = onehot_dot(row_sel_Kxh, sel, bf16)
    within_row_Kxw = onehot_dot(row_sel_Kxh, within_hxw, bf16)
    hit_Kxw = (sel_row_Kxw > 0.5) & (within_row_Kxw == target_K[:, None])
    row_K = jnp.sum(jnp.where(in_row_Kxh, lax.broadcasted_iota(jnp.int32, (k, h), 1), 0), axis=1)
    col_K = jnp.sum(jnp.where(hit_Kxw, lax.broadcasted_iota(jnp.int32, (k, w), 1), 0), axis=1)
    bits_K = jnp.zeros((k,), jnp.int32)
    for shift, part_hxw in _int_parts(bits_hxw, bf16):
        part_row_Kxw = onehot_dot(row_sel_Kxh, part_hxw, bf16)
        part_K = jnp.sum(jnp.where(hit_Kxw, part_row_Kxw, 0.0), axis=1).astype(jnp.int32)
        bits_K = bits_K | jnp.left_shift(part_K, jnp.int32(shift))
    return row_K * w + col_K, bits_K


def row_major_ranks(sel_hxw):
    """int32 [h, w]: how many selected entries precede each entry in row-major order (its
    output slot when selected), from two prefix sums (a scatter kernel's compaction)."""
    s = sel_hxw.astype(jnp.int32)
    rowcnt_h = jnp.sum(s, axis=1)
    return (jnp.cumsum(s, axis=1) - s) + (jnp.cumsum(rowcnt_h) - rowcnt_h)[:, None]


def tile_selection(x_hxw_f32, k: int, radix_bits: int = 1, early: bool = False):
    """(sel_hxw bool, flat_idx_hxw int32): the top-k mask of one float32 tile (ties to the lower
    row-major index) and each entry's row-major index (`early`: see `topk_mask`)."""
    h, w = x_hxw_f32.shape
    flat_idx = (lax.broadcasted_iota(jnp.int32, (h, w), 0) * w
                + lax.broadcasted_iota(jnp.int32, (h, w), 1))
    bits = lax.bitcast_convert_type(x_hxw_f32, jnp.int32)
    return topk_mask(bits & jnp.int32(_ABS_MASK), flat_idx, k, radix_bits, early), flat_idx


def tile_topk(x_hxw_f32, k: int, bf16: bool = False, radix_bits: int = 1, early: bool = False):
    """Top-k of one float32 tile: (idx_K ascending row-major, values_K float32, bit-exact)."""
    sel, _ = tile_selection(x_hxw_f32, k, radix_bits, early)
    idx_k, bits_k = compact(sel, lax.bitcast_convert_type(x_hxw_f32, jnp.int32), k, bf16)
    return idx_k, lax.bitcast_convert_type(bits_k, jnp.float32)
