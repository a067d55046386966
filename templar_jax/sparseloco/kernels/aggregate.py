"""SPEC 2.4 aggregation as one Pallas pass over 64x64 output tiles.

Per tile, the R peers' (index, value) lists of that chunk become dense sums and counts without
atomics, sorting or scatter: a peer's k indices in one chunk are distinct, so with
row one-hot A_hxK[r, j] = (idx_j // w == r) and column one-hot B_Kxw[j, c] = (idx_j % w == c)
    sums_hxw   += where(A, v_j, 0) @ B         counts_hxw += A @ B
(each output is one exact product plus exact zeros: float32 matmuls at HIGHEST precision, or
with bf16 dots (`TEMPLAR_KERNEL_DOTS=bf16`) each value split into three exact bf16 pieces
that tensor cores multiply and the kernel sums back to the same float32). Peers are
added in order 0..R-1 from +0.0, the order of the pure-JAX scatter-add on CPU, so the result is
bit-identical; on GPU it is deterministic where XLA's scatter-add (atomics) is not. Tiles are
written straight into the parameter's layout (no un-chunk transpose), each with a count of its
non-finite entries so the per-tensor skip rule needs no extra pass over the output.
Decoding and the median-norm clip run in XLA on the payload-sized arrays (the same code as the
pure-JAX path, including its power-of-two peer padding). Out-of-range indices (which the wire
decoder rejects) are dropped, which is also how padding peers drop out.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import pallas as pl

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.aggregate import (
    CLIP_EPS, RULES, AggregationError, _lower_median, _stack, aggregate_chunks, aggregate_tensor,
    peer_bucket, peers_upto)
from templar_jax.sparseloco.chunking import from_chunks
from templar_jax.sparseloco.compress import flat_payload, tensor_geometry
from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.kernels.aggregate_scatter import Coded, scatter_sum_tiles
from templar_jax.sparseloco.kernels.backend import (
    aggregation_kernel, default_tiles_per_block, kernel_dots_bf16, pallas_call_kwargs,
    resolve_backend, unsupported_reason)
from templar_jax.sparseloco.kernels.tile_select import onehot_dot
from templar_jax.sparseloco.payload import TensorPayload

log = logging.getLogger(__name__)


def _split_bf16(v_f32):
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
                           for part in _split_bf16(val_k))
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
            dense = sums * inv_n_ref[0, 0]
        out_ref[:, pl.ds(j * w, w)] = dense
        n_bad = jnp.sum((~jnp.isfinite(dense)).astype(jnp.int32))
        bad = jnp.where(slots == j, n_bad, bad)
    bad_ref[...] = bad


def scatter_mean_tiles(idx_RxBxCxK, vals_RxBxCxK, n_valid, geom: ChunkGeometry, *, rule: str,
                       backend: str, tiles_per_block: int, num_warps: int | None = None,
                       n_loop=None):
    """(dense_BxRowsxCols float32, nonfinite_BxYxXx1 int32) from decoded, clipped peer values.

    Entries with an index outside the chunk (padding peers) contribute nothing; `n_valid` is
    the divisor of the "mean" rule. Only peers 0..n_loop-1 are read (default: all R), so the
    padding after the last real peer costs nothing.
    """
    (h, w), (y, x), k = geom.tile, geom.grid, geom.k
    r, b = idx_RxBxCxK.shape[:2]
    t = tiles_per_block
    idx = idx_RxBxCxK.reshape(r, b, y, x, k)
    vals = vals_RxBxCxK.astype(jnp.float32).reshape(r, b, y, x, k)
    inv_n_1x1 = jnp.reshape(1.0 / n_valid.astype(jnp.float32), (1, 1))
    n_loop_1x1 = jnp.reshape(jnp.asarray(r if n_loop is None else n_loop, jnp.int32), (1, 1))
    scalar_spec = pl.BlockSpec((1, 1), lambda bi, yi, xi: (0, 0))
    peer_spec = pl.BlockSpec((r, None, None, t, k), lambda bi, yi, xi: (0, bi, yi, xi, 0))
    kernel = partial(_aggregate_kernel, h=h, w=w, tiles=t, rule=rule,
                     bf16=kernel_dots_bf16(backend, "aggregate"))
    return pl.pallas_call(
        kernel,
        grid=(b, y, x // t),
        in_specs=[peer_spec, peer_spec, scalar_spec, scalar_spec],
        out_specs=[pl.BlockSpec((None, h, w * t), lambda bi, yi, xi: (bi, yi, xi)),
                   pl.BlockSpec((None, None, t, 1), lambda bi, yi, xi: (bi, yi, xi, 0))],
        out_shape=[jax.ShapeDtypeStruct((b, y * h, x * w), jnp.float32),
                   jax.ShapeDtypeStruct((b, y, x, 1), jnp.int32)],
        name="sparseloco_aggregate",
        **pallas_call_kwargs(backend, kernel="aggregate", num_warps=num_warps),
    )(idx, vals, inv_n_1x1, n_loop_1x1)


def _masked_factors(vals, valid_R, rule: str, axis_names):
    """(vals with padding peers zeroed, clip factors [R, B] or None for "mean", n_valid): the
    pure path's operations, so the same bits."""
    valid_R = valid_R.astype(jnp.float32)
    n_valid = jnp.sum(valid_R).astype(jnp.int32)
    vals = vals * valid_R[:, None, None, None]
    factor_RxB = None
    if rule == "median_clip":
        norms_RxB = jnp.sqrt(jax.vmap(lambda v: codec.sumsq(v, axis_names))(vals))
        m_B = _lower_median(jnp.where(valid_R[:, None] > 0, norms_RxB, jnp.inf), n_valid)
        factor_RxB = jnp.minimum(1.0, m_B / (norms_RxB + CLIP_EPS)) * valid_R[:, None]
    return vals, factor_RxB, n_valid.astype(jnp.float32)


def _clipped_values(idx, vals, valid_R, rule: str, chunk_size: int, axis_names):
    """The pure path's padding mask and median clip; padding peers' indices are moved out of
    the chunk so the kernel drops them."""
    vals, factor_RxB, n_valid = _masked_factors(vals, valid_R, rule, axis_names)
    if factor_RxB is not None:
        vals = vals * factor_RxB[:, :, None, None]
    idx = jnp.where(valid_R[:, None, None, None] > 0, idx, chunk_size)
    return idx, vals, n_valid


def _zero_bad_tensors(dense, nonfinite, axis_names):
    """Zero each reference tensor with a non-finite entry (counts per tile or block, summed
    across shards); the zeroing pass runs only when some tensor needs it."""
    bad_B = jnp.sum(nonfinite, axis=(1, 2, 3))
    bad_B = lax.psum(bad_B, tuple(axis_names)) if axis_names else bad_B
    ok_B = bad_B == 0
    return lax.cond(jnp.all(ok_B), lambda d: d,
                    lambda d: jnp.where(ok_B[:, None, None], d, 0.0), dense)


def _kernel_tiles(geom: ChunkGeometry, backend: str, tiles_per_block: int | None):
    """(chunks per program, None) or (_, why the backend cannot tile this geometry)."""
    tiles = tiles_per_block or default_tiles_per_block(backend, "aggregate")
    if len(geom.tile) == 2 and geom.grid[1] % tiles:
        tiles = 1
    return tiles, unsupported_reason(geom, jnp.float32, backend, tiles)


def aggregate_dense_pallas(idx_RxBxCxK, vals_RxBxCxK, valid_R, *, geom: ChunkGeometry,
                           rule: str, axis_names: Sequence[str] = (), backend: str = "auto",
                           tiles_per_block: int | None = None, kernel: str | None = None):
    """SPEC 2.4 from decoded peer values straight to the tensor layout [B, *tensor_shape].

    Same inputs as `sparseloco.aggregate.aggregate_chunks` (R possibly padded, `valid_R` marks
    real peers; under shard_map `axis_names` completes norms and the non-finite check across
    shards), but the output needs no `from_chunks`. A reference tensor with any non-finite
    value comes back as zeros; the zeroing pass runs only when some tensor needs it.
    Geometries the backend cannot tile run `aggregate_chunks` + `from_chunks` instead.
    `kernel`: "onehot" | "scatter" (None: `backend.aggregation_kernel`, TEMPLAR_AGG_KERNEL).
    """
    backend = resolve_backend(backend)
    tiles, reason = _kernel_tiles(geom, backend, tiles_per_block)
    if reason is not None:
        dense = aggregate_chunks(idx_RxBxCxK, vals_RxBxCxK, valid_R, chunk_size=geom.chunk_size,
                                 rule=rule, axis_names=axis_names)
        return from_chunks(dense, geom)
    idx, vals, n_valid = _clipped_values(idx_RxBxCxK, vals_RxBxCxK, valid_R, rule,
                                         geom.chunk_size, axis_names)
    kernel = kernel or aggregation_kernel(backend)
    tiles_fn = scatter_sum_tiles if kernel == "scatter" else scatter_mean_tiles
    dense, nonfinite = tiles_fn(idx, vals, n_valid, geom, rule=rule, backend=backend,
                                tiles_per_block=tiles, n_loop=peers_upto(valid_R))
    return _zero_bad_tensors(dense, nonfinite, axis_names)


def aggregate_payload_pallas(flat_R: TensorPayload, valid_R, *, geom: ChunkGeometry, rule: str,
                             axis_names: Sequence[str] = (), backend: str = "auto",
                             tiles_per_block: int | None = None, kernel: str | None = None):
    """`aggregate_dense_pallas` from the peers' payload arrays ([R, B, ...] as
    `compress.flat_payload` gives per peer). The scatter kernel decodes the 2-bit codes itself,
    so the decoded values are never written out (XLA reads them once, fused, for the clip
    norms); the one-hot kernel and the fallbacks decode in XLA first."""
    backend = resolve_backend(backend)
    kernel = kernel or aggregation_kernel(backend)
    vals = jax.vmap(codec.dequantize)(flat_R.codes, flat_R.shift, flat_R.lut)
    tiles, reason = _kernel_tiles(geom, backend, tiles_per_block)
    if kernel != "scatter" or reason is not None:
        return aggregate_dense_pallas(flat_R.idx, vals, valid_R, geom=geom, rule=rule,
                                      axis_names=axis_names, backend=backend,
                                      tiles_per_block=tiles_per_block, kernel=kernel)
    _, factor_RxB, n_valid = _masked_factors(vals, valid_R, rule, axis_names)
    # each code's value, with the operations `_masked_factors` + clip apply to every entry
    table = (flat_R.lut + flat_R.shift[:, :, None]) * valid_R.astype(jnp.float32)[:, None, None]
    if factor_RxB is not None:
        table = table * factor_RxB[:, :, None]
    coded = Coded(flat_R.codes, table)
    dense, nonfinite = scatter_sum_tiles(flat_R.idx, coded, n_valid, geom, rule=rule,
                                         backend=backend, tiles_per_block=tiles,
                                         n_loop=peers_upto(valid_R), valid_R=valid_R)
    return _zero_bad_tensors(dense, nonfinite, axis_names)


@partial(jax.jit, static_argnames=("shape", "batch_ndim", "chunk", "rule", "backend", "tiles",
                                   "kernel"))
def _aggregate_stacked_pallas(stacked, valid_R, *, shape, batch_ndim, chunk, rule, backend,
                              tiles, kernel=None):
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    flat_R = jax.vmap(lambda p: flat_payload(p, batch_shape))(stacked)
    dense = aggregate_payload_pallas(flat_R, valid_R, geom=geom, rule=rule, backend=backend,
                                     tiles_per_block=tiles, kernel=kernel)
    return dense.reshape(shape)


def aggregate_tensor_pallas(payloads: Sequence[TensorPayload], shape, *,
                            rule: str = "median_clip", chunk: int = 64, batch_ndim: int = 0,
                            backend: str | None = "auto", tiles_per_block: int | None = None):
    """Drop-in for `sparseloco.aggregate_tensor` (same arguments, bit-identical result on CPU)."""
    if rule not in RULES:
        raise AggregationError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")
    if not payloads:
        raise AggregationError("aggregate_tensor needs at least one payload")
    shape = tuple(int(s) for s in shape)
    backend = resolve_backend(backend)
    _, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    tiles = tiles_per_block or default_tiles_per_block(backend, "aggregate")
    if len(geom.tile) == 2 and geom.grid[1] % tiles:
        tiles = 1
    reason = unsupported_reason(geom, jnp.float32, backend, tiles)
    if reason is not None:
        log.debug("pure-JAX aggregation for %s: %s", shape, reason)
        return aggregate_tensor(payloads, shape, rule=rule, chunk=chunk, batch_ndim=batch_ndim)
    padded = peer_bucket(len(payloads))  # as the pure path: one compile per power-of-two bucket
    valid_R = np.arange(padded) < len(payloads)
    return _aggregate_stacked_pallas(_stack(payloads, pad_to=padded), valid_R, shape=shape,
                                     batch_ndim=batch_ndim, chunk=chunk, rule=rule,
                                     backend=backend, tiles=tiles,
                                     kernel=aggregation_kernel(backend))

