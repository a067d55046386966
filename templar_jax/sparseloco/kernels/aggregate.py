"""SPEC 2.4 aggregation as one Pallas pass over 64x64 output tiles.

Per tile, the R peers' (index, value) lists of that chunk become dense sums and counts without
atomics, sorting or scatter: a peer's k indices in one chunk are distinct, so with
row one-hot A_hxK[r, j] = (idx_j // w == r) and column one-hot B_Kxw[j, c] = (idx_j % w == c)
    sums_hxw   += where(A, v_j, 0) @ B         counts_hxw += A @ B
(matmuls at HIGHEST precision: each output is one exact product plus exact zeros). Peers are
added in order 0..R-1 from +0.0, the order of the pure-JAX scatter-add on CPU, so the result is
bit-identical; on GPU it is deterministic where XLA's scatter-add (atomics) is not. Tiles are
written straight into the parameter's layout (no un-chunk transpose), each with a count of its
non-finite entries so the per-tensor skip rule needs no extra pass over the output.
Decoding and the median-norm clip run in XLA on the payload-sized arrays (the same code as the
pure-JAX path). Out-of-range indices (which the wire decoder rejects) are dropped.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from templar_jax.sparseloco.aggregate import (
    CLIP_EPS, RULES, AggregationError, _lower_median, _stack, aggregate_tensor)
from templar_jax.sparseloco.compress import decode_values, tensor_geometry
from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.kernels.backend import (
    default_tiles_per_block, pallas_call_kwargs, resolve_backend, unsupported_reason)
from templar_jax.sparseloco.payload import TensorPayload

log = logging.getLogger(__name__)


def _tile_sums_counts(idx_ref, val_ref, j, *, peers, h, w):
    """(sums_hxw, counts_hxw) of chunk j of the block over all peers, peer order 0..R-1."""
    hi = lax.Precision.HIGHEST
    rows_hx1 = lax.broadcasted_iota(jnp.int32, (h, 1), 0)
    cols_1xw = lax.broadcasted_iota(jnp.int32, (1, w), 1)

    def add_peer(r, carry):
        sums, counts = carry
        idx_k = idx_ref[r, j, :]
        val_k = val_ref[r, j, :]
        in_row_hxK = rows_hx1 == (idx_k // w)[None, :]
        in_col_Kxw = ((idx_k % w)[:, None] == cols_1xw).astype(jnp.float32)
        vals_hxK = jnp.where(in_row_hxK, val_k[None, :], 0.0)
        sums = sums + jnp.dot(vals_hxK, in_col_Kxw, precision=hi)
        counts = counts + jnp.dot(in_row_hxK.astype(jnp.float32), in_col_Kxw, precision=hi)
        return sums, counts

    zeros = jnp.zeros((h, w), jnp.float32)
    return lax.fori_loop(0, peers, add_peer, (zeros, zeros))


def _aggregate_kernel(idx_ref, val_ref, out_ref, bad_ref, *, peers, h, w, tiles, mean_over):
    bad = jnp.zeros((tiles,), jnp.int32)
    slots = lax.broadcasted_iota(jnp.int32, (tiles,), 0)
    for j in range(tiles):
        sums, counts = _tile_sums_counts(idx_ref, val_ref, j, peers=peers, h=h, w=w)
        if mean_over is None:  # production rule: mean over the peers that selected the coordinate
            dense = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 0.0)
        else:                  # paper rule: plain 1/R average
            dense = sums / mean_over
        out_ref[:, pl.ds(j * w, w)] = dense
        n_bad = jnp.sum((~jnp.isfinite(dense)).astype(jnp.int32))
        bad = jnp.where(slots == j, n_bad, bad)
    bad_ref[...] = bad


def scatter_mean_tiles(idx_RxBxCxK, vals_RxBxCxK, geom: ChunkGeometry, *, rule: str,
                       backend: str, tiles_per_block: int, num_warps: int = 4):
    """(dense_BxRowsxCols float32, nonfinite_BxYxX int32) from decoded, clipped peer values."""
    (h, w), (y, x), k = geom.tile, geom.grid, geom.k
    r, b = idx_RxBxCxK.shape[:2]
    t = tiles_per_block
    xb = x // t
    idx = idx_RxBxCxK.reshape(r, b, y, x, k)
    vals = vals_RxBxCxK.astype(jnp.float32).reshape(r, b, y, x, k)
    peer_spec = pl.BlockSpec((r, None, None, t, k), lambda bi, yi, xi: (0, bi, yi, xi, 0))
    kernel = partial(_aggregate_kernel, peers=r, h=h, w=w, tiles=t,
                     mean_over=None if rule == "median_clip" else r)
    return pl.pallas_call(
        kernel,
        grid=(b, y, xb),
        in_specs=[peer_spec, peer_spec],
        out_specs=[pl.BlockSpec((None, h, w * t), lambda bi, yi, xi: (bi, yi, xi)),
                   pl.BlockSpec((None, None, t), lambda bi, yi, xi: (bi, yi, xi))],
        out_shape=[jax.ShapeDtypeStruct((b, y * h, x * w), jnp.float32),
                   jax.ShapeDtypeStruct((b, y, x), jnp.int32)],
        name="sparseloco_aggregate",
        **pallas_call_kwargs(backend, num_warps=num_warps),
    )(idx, vals)


def _clipped_values(stacked: TensorPayload, batch_shape, rule: str):
    """(idx_RxBxCxK, values_RxBxCxK): dequantized, median-norm clipped for "median_clip"."""
    idx, vals = jax.vmap(lambda p: decode_values(p, batch_shape))(stacked)
    if rule == "median_clip":
        norms_RxB = jnp.sqrt(jnp.sum(vals * vals, axis=(2, 3)))
        m_B = _lower_median(norms_RxB)
        factor_RxB = jnp.minimum(1.0, m_B / (norms_RxB + CLIP_EPS))
        vals = vals * factor_RxB[:, :, None, None]
    return idx, vals


@partial(jax.jit, static_argnames=("shape", "batch_ndim", "chunk", "rule", "backend", "tiles"))
def _aggregate_stacked_pallas(stacked, *, shape, batch_ndim, chunk, rule, backend, tiles):
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    idx, vals = _clipped_values(stacked, batch_shape, rule)
    dense, nonfinite_BxYxX = scatter_mean_tiles(idx, vals, geom, rule=rule, backend=backend,
                                                tiles_per_block=tiles)
    ok_B = jnp.all(nonfinite_BxYxX == 0, axis=(1, 2))
    dense = lax.cond(jnp.all(ok_B), lambda d: d,
                     lambda d: jnp.where(ok_B[:, None, None], d, 0.0), dense)
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
    tiles = tiles_per_block or default_tiles_per_block(backend)
    if len(geom.tile) == 2 and geom.grid[1] % tiles:
        tiles = 1
    reason = unsupported_reason(geom, jnp.float32, backend, tiles)
    if reason is not None:
        log.debug("pure-JAX aggregation for %s: %s", shape, reason)
        return aggregate_tensor(payloads, shape, rule=rule, chunk=chunk, batch_ndim=batch_ndim)
    return _aggregate_stacked_pallas(_stack(payloads), shape=shape, batch_ndim=batch_ndim,
                                     chunk=chunk, rule=rule, backend=backend, tiles=tiles)

