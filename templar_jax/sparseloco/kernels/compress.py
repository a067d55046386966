"""Fused error feedback + per-chunk top-k as one Pallas pass over 64x64 tiles.

Split of the work (one full read of e and delta, one full write of the new e):
  pass 1 (kernel, per tile, in the tensor's own layout: no chunk transpose):
      acc = beta*e + delta  -> written out as the new error buffer
      top-k of |acc| (radix select, lower-index ties) -> idx_K, values_K
  stats (XLA, on the selected values only, 1/64 of the data): `codec.quantize` (the same
      function as the pure-JAX path, with the same psum-over-shards support), `dequantize`
  pass 2 (XLA scatter into acc, selected positions only, unique indices, in place):
      e_new[idx] = v - v_hat
`ef_compress_tensor_pallas` is the kernel core: the contract of the pure core
`sparseloco.compress.ef_compress_tensor` (plus `config`, a `KernelConfig`, and `tiles_per_block`)
with bit-identical results; it falls back to that function for geometries the backend cannot
tile (`backend.unsupported_reason`).
NaN/Inf policy: non-finite error-feedback values are selected as the largest magnitudes (NaN
above +Inf, as XLA's top_k on CPU does), exactly as the pure path.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.compress import ef_compress_tensor
from templar_jax.sparseloco.geometry import ChunkGeometry, flat_batch
from templar_jax.sparseloco.kernels.backend import compress_tiles, kernel_tiles, pallas_call_kwargs
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.sparseloco.kernels.tile_select import row_major_ranks, tile_selection, tile_topk
from templar_jax.sparseloco.payload import TensorPayload, unflatten_payload

log = logging.getLogger(__name__)


def _scatter_selected(idx_ref, val_ref, j, acc_hxw, k, radix_bits, early):
    """Store tile j's selected entries at their row-major ranks (Triton's pointer scatter).
    Unselected lanes are masked and point past the row, so the interpreter's emulation of a
    masked store (which writes old values back) drops them instead of colliding."""
    from jax.experimental.pallas import triton as pl_triton  # masked store: any backend

    sel, flat_idx = tile_selection(acc_hxw, k, radix_bits, early)
    slot = jnp.where(sel, row_major_ranks(sel), k)
    row = jnp.full(slot.shape, j, jnp.int32)
    pl_triton.store(idx_ref.at[row, slot], flat_idx, mask=sel)
    pl_triton.store(val_ref.at[row, slot], acc_hxw, mask=sel)


# Diagnostic cuts of the kernel for bench/compress.py's stage profile (results are NOT the
# compression's): "ef" stops after the error-feedback update; "select" also finds each tile's
# top-k mask but writes only its size (so the mask is not optimized away), no compaction.
STAGE_CUTS = ("ef", "select")


def _ef_select_kernel(e_ref, d_ref, acc_ref, idx_ref, val_ref, *, beta, k, w, tiles, bf16,
                      radix_bits, compact, early, cut=None):
    for j in range(tiles):  # static: each 64x64 chunk of the block
        cols = pl.ds(j * w, w)
        acc = beta * e_ref[:, cols].astype(jnp.float32) + d_ref[:, cols].astype(jnp.float32)
        acc = acc.astype(acc_ref.dtype)
        acc_ref[:, cols] = acc
        if cut == "ef":
            continue
        if cut == "select":
            sel, _ = tile_selection(acc, k, radix_bits, early)
            idx_ref[j, :] = jnp.full((k,), jnp.sum(sel.astype(jnp.int32)))
            continue
        if compact == "scatter":
            _scatter_selected(idx_ref, val_ref, j, acc, k, radix_bits, early)
            continue
        idx_k, val_k = tile_topk(acc, k, bf16, radix_bits, early)
        idx_ref[j, :] = idx_k
        val_ref[j, :] = val_k


def ef_select(e_BxRxC, delta_BxRxC, *, beta: float, geom: ChunkGeometry,
              config: KernelConfig = KernelConfig(), tiles_per_block: int | None = None,
              cut: str | None = None):
    """Pass 1: (acc_BxRxC, idx_BxYxXxK int32, values_BxYxXxK) for 2-D chunk geometry, with the
    compression variant of `config`. `cut` (one of STAGE_CUTS) times a prefix of the kernel;
    its outputs are not a selection."""
    if cut is not None and cut not in STAGE_CUTS:
        raise ValueError(f"unknown stage cut {cut!r}; expected one of {STAGE_CUTS}")
    config = config.resolve("compress")
    (h, w), (y, x), k = geom.tile, geom.grid, geom.k
    b = e_BxRxC.shape[0]
    t = tiles_per_block or compress_tiles(config.backend)
    grid = (b, y, x // t)
    tile_spec = pl.BlockSpec((None, h, w * t), lambda bi, yi, xi: (bi, yi, xi))
    sel_spec = pl.BlockSpec((None, None, t, k), lambda bi, yi, xi: (bi, yi, xi, 0))
    kernel = partial(_ef_select_kernel, beta=beta, k=k, w=w, tiles=t, bf16=config.dots == "bf16",
                     radix_bits=config.radix_bits, compact=config.compact,
                     early=config.select == "early", cut=cut)
    return pl.pallas_call(
        kernel,
        grid=grid,
        in_specs=[tile_spec, tile_spec],
        out_specs=[tile_spec, sel_spec, sel_spec],
        out_shape=[jax.ShapeDtypeStruct(e_BxRxC.shape, e_BxRxC.dtype),
                   jax.ShapeDtypeStruct((b, y, x, k), jnp.int32),
                   jax.ShapeDtypeStruct((b, y, x, k), e_BxRxC.dtype)],
        name="sparseloco_ef_topk",
        **pallas_call_kwargs(config),
    )(e_BxRxC, delta_BxRxC)


def scatter_residual(acc_BxRxC, idx_BxCxK, res_BxCxK, geom: ChunkGeometry):
    """Pass 2: acc[b, row, col] = res at each selected chunk-local index (unique, in place)."""
    (h, w), (_, x) = geom.tile, geom.grid
    b, c, k = idx_BxCxK.shape
    chunk = jnp.arange(c, dtype=jnp.int32)[None, :, None]
    rows = (chunk // x) * h + idx_BxCxK // w
    cols = (chunk % x) * w + idx_BxCxK % w
    bidx = jnp.broadcast_to(jnp.arange(b, dtype=jnp.int32)[:, None, None], idx_BxCxK.shape)
    return acc_BxRxC.at[bidx, rows, cols].set(res_BxCxK, unique_indices=True,
                                              mode="promise_in_bounds")


def ef_compress_tensor_pallas(e, delta, *, beta: float, geom: ChunkGeometry, bins: int = 4,
                              sigma_range: float = 6.0, axis_names: Sequence[str] = (),
                              config: KernelConfig = KernelConfig(),
                              tiles_per_block: int | None = None):
    """The kernel core, a drop-in for `ef_compress_tensor` (same arguments and bit-identical
    results; `config` picks the variant, `tiles_per_block` the chunks per program, default the
    backend's).

    e <- beta*e + delta; payload = Q(TopK(e)); e <- e - decode(payload). Works per shard under
    `shard_map` (pass the mesh axes that shard the tensor dims as `axis_names`, as for the
    pure-JAX function: only the quantizer's scalar statistics are psum'ed).
    """
    config = config.resolve("compress")
    tiles, reason = kernel_tiles(geom, e.dtype, config.backend,
                                 tiles_per_block or compress_tiles(config.backend))
    if reason is not None:
        log.debug("pure-JAX compression for %s %s: %s", e.shape, e.dtype, reason)
        return ef_compress_tensor(e, delta, beta=beta, geom=geom, bins=bins,
                                  sigma_range=sigma_range, axis_names=axis_names)
    batch_shape = e.shape[: e.ndim - 2]
    b = flat_batch(batch_shape)
    (h, w), (y, x) = geom.tile, geom.grid
    e3, d3 = e.reshape(b, y * h, x * w), delta.reshape(b, y * h, x * w)
    acc, idx, vals = ef_select(e3, d3, beta=beta, geom=geom, config=config, tiles_per_block=tiles)
    idx = idx.reshape(b, y * x, geom.k)
    vals = vals.reshape(b, y * x, geom.k)
    # Keep XLA from fusing the statistics reductions into the kernel's consumers: the sums then
    # see a materialized [B, C, k] buffer, as in the pure-JAX path, and reduce in the same order.
    idx, vals = jax.lax.optimization_barrier((idx, vals))
    codes, shift, scale, lut = codec.quantize(vals, bins=bins, sigma_range=sigma_range,
                                              axis_names=axis_names)
    v_hat = codec.dequantize(codes, shift, lut)
    residual = (vals.astype(jnp.float32) - v_hat).astype(e.dtype)
    new_e = scatter_residual(acc, idx, residual, geom).reshape(e.shape)
    payload = TensorPayload(idx, codes, shift, scale, lut)
    return unflatten_payload(payload, batch_shape), new_e
