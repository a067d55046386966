"""SPEC 2.4 aggregation as one Pallas pass over 64x64 output tiles, and the kernel core that
picks the aggregation kernel.

Per tile, the R peers' (index, value) lists of that chunk become dense sums and counts without
atomics, sorting or scatter: a peer's k indices in one chunk are distinct, so with
row one-hot A_hxK[r, j] = (idx_j // w == r) and column one-hot B_Kxw[j, c] = (idx_j % w == c)
    sums_hxw   += where(A, v_j, 0) @ B         counts_hxw += A @ B
(each output is one exact product plus exact zeros: float32 matmuls at HIGHEST precision, or
with bf16 dots (`KernelConfig.dots`) each value split into three exact bf16 pieces that tensor
cores multiply and the kernel sums back to the same float32). Peers are added in order 0..R-1
from +0.0, the order of the pure-JAX scatter-add on CPU, so the result is bit-identical; on GPU
it is deterministic where XLA's scatter-add (atomics) is not. Tiles are written straight into
the parameter's layout (no un-chunk transpose), each with a count of its non-finite entries so
the per-tensor skip rule needs no extra pass over the output.
Decoding and the median-norm clip run in XLA on the payload-sized arrays (`rules.py`, the same
code as the pure path). Out-of-range indices (which the wire decoder rejects) are dropped, which
is also how padding and invalid peers drop out.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.kernels.aggregate_scatter import Coded, inverse_counts, scatter_sum_tiles
from templar_jax.sparseloco.kernels.backend import kernel_tiles, pallas_call_kwargs
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.sparseloco.kernels.tile_select import onehot_dot
from templar_jax.sparseloco.payload import TensorPayload
from templar_jax.sparseloco.rules import (
    aggregate_block, clip_factors, drop_invalid, finite_peers, peer_norms, peers_upto)

log = logging.getLogger(__name__)


def split_bf16(v_f32):
    """(hi, mid, lo) bfloat16 with (hi + mid) + lo == v exactly in float32: each takes the next
    8 significant bits. Holds for finite |v| >= 2^-100 and +0; below, lo may be denormal and a
    flush-to-zero device drops v's last bits (an absolute error under 1e-37), and -0 sums to +0
    (as it does when the pure path adds it to its +0 start)."""
    hi = v_f32.astype(jnp.bfloat16)
    r1 = v_f32 - hi.astype(jnp.float32)
    mid = r1.astype(jnp.bfloat16)
    lo = (r1 - mid.astype(jnp.float32)).astype(jnp.bfloat16)
    return hi, mid, lo


def _tile_sums_counts(idx_ref, val_ref, j, n_loop, *, h, w, bf16):
    """(sums_hxw, counts_hxw) of chunk j of the block over peers 0..n_loop-1, in that order."""
    rows_hx1 = lax.broadcasted_iota(jnp.int32, (h, 1), 0)
    cols_1xw = lax.broadcasted_iota(jnp.int32, (1, w), 1)

    def add_peer(r, carry):
        sums, counts = carry
        idx_k = idx_ref[r, j, :]
        val_k = val_ref[r, j, :]
        # indices are >= 0, so C-style div/rem (no sign fix-ups: cheaper, and Mosaic-friendly)
        in_row_hxK = rows_hx1 == lax.div(idx_k, jnp.int32(w))[None, :]
        in_col_Kxw = (lax.rem(idx_k, jnp.int32(w))[:, None] == cols_1xw).astype(jnp.float32)
        if bf16:  # three exact bf16 pieces per value, summed back to the float32 value
            hi, mid, lo = (onehot_dot(jnp.where(in_row_hxK, part[None, :], 0.0), in_col_Kxw, True)
                           for part in split_bf16(val_k))
            peer_hxw = (hi + mid) + lo
        else:
            peer_hxw = onehot_dot(jnp.where(in_row_hxK, val_k[None, :], 0.0), in_col_Kxw, False)
        sums = sums + peer_hxw
        counts = counts + onehot_dot(in_row_hxK.astype(jnp.float32), in_col_Kxw, bf16)
        return sums, counts

    zeros = jnp.zeros((h, w), jnp.float32)
    return lax.fori_loop(0, n_loop, add_peer, (zeros, zeros))


def _aggregate_kernel(idx_ref, val_ref, inv_n_ref, n_loop_ref, out_ref, bad_ref, *, h, w, tiles,
                      rule, bf16):
    bad = jnp.zeros((tiles, 1), jnp.int32)  # (t, 1): the layout Mosaic TPU accepts as a block
    slots = lax.broadcasted_iota(jnp.int32, (tiles, 1), 0)
    for j in range(tiles):
        sums, counts = _tile_sums_counts(idx_ref, val_ref, j, n_loop_ref[0, 0], h=h, w=w,
                                         bf16=bf16)
        if rule == "median_clip":  # mean over the peers that selected the coordinate
            dense = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 0.0)
        else:  # paper rule: plain average over the valid peers. XLA rewrites the pure path's
            # `sums / n` (division by a broadcast scalar) to `sums * (1/n)`; do the same here.
            dense = sums * inv_n_ref[0, 0]  # this tensor's 1 / (number of valid peers)
        out_ref[:, pl.ds(j * w, w)] = dense
        n_bad = jnp.sum((~jnp.isfinite(dense)).astype(jnp.int32))
        bad = jnp.where(slots == j, n_bad, bad)
    bad_ref[...] = bad


def scatter_mean_tiles(idx_RxBxCxK, vals_RxBxCxK, n_valid_B, geom: ChunkGeometry, *, rule: str,
                       config: KernelConfig = KernelConfig(), n_loop=None):
    """(dense_BxRowsxCols float32, nonfinite_BxYxXx1 int32) from decoded, clipped peer values,
    `config.aggregate_tiles` chunks per program.

    Entries with an index outside the chunk (padding and dropped peers) contribute nothing;
    `n_valid_B` (per reference tensor) is the divisor of the "mean" rule. Only peers 0..n_loop-1 are read (default: all R), so the
    padding after the last real peer costs nothing.
    """
    config = config.resolve("aggregate")
    (h, w), (y, x), k = geom.tile, geom.grid, geom.k
    r, b = idx_RxBxCxK.shape[:2]
    t = config.aggregate_tiles
    idx = idx_RxBxCxK.reshape(r, b, y, x, k)
    vals = vals_RxBxCxK.astype(jnp.float32).reshape(r, b, y, x, k)
    inv_n_Bx1x1 = inverse_counts(n_valid_B, b)
    n_loop_1x1 = jnp.reshape(jnp.asarray(r if n_loop is None else n_loop, jnp.int32), (1, 1))
    scalar_spec = pl.BlockSpec((1, 1), lambda bi, yi, xi: (0, 0))
    per_tensor_spec = pl.BlockSpec((None, 1, 1), lambda bi, yi, xi: (bi, 0, 0))
    peer_spec = pl.BlockSpec((r, None, None, t, k), lambda bi, yi, xi: (0, bi, yi, xi, 0))
    kernel = partial(_aggregate_kernel, h=h, w=w, tiles=t, rule=rule, bf16=config.dots == "bf16")
    return pl.pallas_call(
        kernel,
        grid=(b, y, x // t),
        in_specs=[peer_spec, peer_spec, per_tensor_spec, scalar_spec],
        out_specs=[pl.BlockSpec((None, h, w * t), lambda bi, yi, xi: (bi, yi, xi)),
                   pl.BlockSpec((None, None, t, 1), lambda bi, yi, xi: (bi, yi, xi, 0))],
        out_shape=[jax.ShapeDtypeStruct((b, y * h, x * w), jnp.float32),
                   jax.ShapeDtypeStruct((b, y, x, 1), jnp.int32)],
        name="sparseloco_aggregate",
        **pallas_call_kwargs(config),
    )(idx, vals, inv_n_Bx1x1, n_loop_1x1)


def _zero_bad_tensors(dense, nonfinite, axis_names):
    """Zero each reference tensor with a non-finite entry (counts per tile or block, summed
    across shards); the zeroing pass runs only when some tensor needs it."""
    bad_B = jnp.sum(nonfinite, axis=(1, 2, 3))
    bad_B = lax.psum(bad_B, tuple(axis_names)) if axis_names else bad_B
    ok_B = bad_B == 0
    return lax.cond(jnp.all(ok_B), lambda d: d,
                    lambda d: jnp.where(ok_B[:, None, None], d, 0.0), dense)


def aggregate_block_pallas(flat_R: TensorPayload, valid_R, *, geom: ChunkGeometry, rule: str,
                           axis_names: Sequence[str] = (), config: KernelConfig = KernelConfig()):
    """The kernel core, a drop-in for the pure core `rules.aggregate_block` (peers' payload
    arrays of one block of chunks -> dense [B, *block shape]; bit-identical on CPU), with the
    aggregation kernel `config.aggregate`. The scatter kernel decodes the 2-bit codes itself, so
    the decoded values are never written out (XLA reads them once, fused, for the clip norms);
    the one-hot kernel takes values decoded and clipped in XLA. Geometries the backend cannot
    tile run the pure core."""
    config = config.resolve("aggregate")
    tiles, reason = kernel_tiles(geom, jnp.float32, config.backend, config.aggregate_tiles)
    if reason is not None:
        log.debug("pure-JAX aggregation for %s: %s", geom, reason)
        return aggregate_block(flat_R, valid_R, geom=geom, rule=rule, axis_names=axis_names)
    config = dataclasses.replace(config, aggregate_tiles=tiles)
    vals = jax.vmap(codec.dequantize)(flat_R.codes, flat_R.shift, flat_R.lut)
    norms_RxB = peer_norms(vals, axis_names)
    valid_RxB, n_valid_B = finite_peers(norms_RxB, valid_R)  # a non-finite peer drops out
    factor_RxB = clip_factors(norms_RxB, valid_RxB, n_valid_B) if rule == "median_clip" else None
    if config.aggregate == "scatter":
        # each code's value, with the operations the pure path applies to every entry
        table = flat_R.lut + flat_R.shift[:, :, None]
        if factor_RxB is not None:
            table = table * factor_RxB[:, :, None]
        dense, nonfinite = scatter_sum_tiles(flat_R.idx, Coded(flat_R.codes, table), n_valid_B,
                                             geom, rule=rule, config=config,
                                             n_loop=peers_upto(valid_R), valid_RxB=valid_RxB)
    else:
        if factor_RxB is not None:
            vals = vals * factor_RxB[:, :, None, None]
        idx = drop_invalid(flat_R.idx, valid_RxB, geom.chunk_size)
        dense, nonfinite = scatter_mean_tiles(idx, vals, n_valid_B, geom, rule=rule, config=config,
                                              n_loop=peers_upto(valid_R))
    return _zero_bad_tensors(dense, nonfinite, axis_names)
