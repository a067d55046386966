"""SPEC 2.4 aggregation as a Triton kernel that scatters each peer into its chunk in place.

The one-hot kernel (`aggregate.py`) builds each peer's dense 64x64 tile from k = 64 entries with
matmuls: O(k * chunk) work per peer and chunk, which lost to XLA's scatter-add on a GPU (tuned.py).
This kernel does O(k) per peer and chunk instead:

    program = one block of chunks, in the parameter's own layout (no un-chunk transpose)
    zero the block's sums (and counts);                                        barrier
    for peer 0..n_loop-1:  sums[idx] += v  (gather, add, scatter; counts[idx] += 1); barrier
    finalize the block: mean, non-finite count

No atomics: a program owns its chunks, a peer's k indices in a chunk are distinct (the wire
decoder checks it), so no two lanes of one peer's store collide, and the barrier orders the
peers. Each coordinate therefore sums its peers in order 0..R-1 from +0.0, as the pure path's
scatter-add does on CPU: bit-identical results, deterministic on a GPU. The read-modify-write
traffic stays inside a 16 KB chunk, so it runs from cache; HBM sees the block's zeroing, the
finalize pass and the payload reads (plus the counts buffer, int8 when R <= 127, for
median_clip). Values come either decoded or as the payload's 1-byte codes plus a per-peer table
of what each code decodes to (`Coded`, built by `aggregate.aggregate_block_pallas`): the
kernel then reads 5 bytes per entry instead of 8 and XLA writes no decoded copy. Triton only
(Mosaic TPU has no vector scatter); the interpreter runs it on CPU.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.kernels.backend import pallas_call_kwargs
from templar_jax.sparseloco.kernels.config import KernelConfig


def _barrier(backend: str):
    """Orders one peer's stores before the next peer's loads across the program's threads (the
    interpreter runs a program serially: nothing to order)."""
    if backend == "triton":
        from jax.experimental.pallas import triton as pl_triton
        return pl_triton.debug_barrier
    return lambda: None


def _masked_rmw(ref, rows, cols, ok, update):
    """ref[rows, cols] = update(ref[rows, cols]) where ok (distinct positions), nothing elsewhere.
    Masked lanes point one row past the block: Triton never touches them, and the interpreter
    (which emulates a masked store as a store of the old value) drops out-of-range writes, so
    they cannot collide with a real lane's write."""
    from jax.experimental.pallas import triton as pl_triton  # masked load/store: any backend

    at = ref.at[jnp.where(ok, rows, ref.shape[0]), cols]
    pl_triton.store(at, update(pl_triton.load(at, mask=ok, other=0)), mask=ok)


class Coded(NamedTuple):
    """Peers' values as codes plus, per peer and reference tensor, the value each code decodes
    to, clip factor included: code_values[r, b, i] = (lut[i] + shift) * factor, the pure path's
    per-entry operations in its order. Selecting from that table is
    exact, and the kernel's only arithmetic on a value is the add into the sum (a multiply
    there could be contracted with that add into a fused multiply-add, as XLA on CPU does,
    where the pure path's scatter-add adds the rounded product)."""
    codes: Any        # [R, B, C, K] uint8
    code_values: Any  # [R, B, N] float32


def _coded_values(code_ref, table_ref, n_codes: int):
    """peer p -> table[p, code] per entry; codes >= n_codes decode to NaN, as
    `codec.dequantize`'s take_along_axis fills them."""
    def values(p):
        codes = code_ref[p].astype(jnp.int32)
        v = jnp.full(codes.shape, jnp.nan, jnp.float32)
        for i in range(n_codes):
            v = jnp.where(codes == i, table_ref[p, i], v)
        return v
    return values


def _scatter_kernel(idx_ref, *refs, n_codes, w, tiles, chunk_size, rule, barrier):
    if n_codes:
        code_ref, table_ref, valid_ref, inv_n_ref, n_loop_ref, out_ref, *rest = refs
        values = _coded_values(code_ref, table_ref, n_codes)
    else:  # values decoded and clipped by the caller
        val_ref, valid_ref, inv_n_ref, n_loop_ref, out_ref, *rest = refs
        values = lambda p: val_ref[p]  # noqa: E731
    cnt_ref, bad_ref = rest if rule == "median_clip" else (None, rest[0])
    out_ref[...] = jnp.zeros(out_ref.shape, out_ref.dtype)
    if cnt_ref is not None:
        cnt_ref[...] = jnp.zeros(cnt_ref.shape, cnt_ref.dtype)
    barrier()
    k = idx_ref.shape[-1]
    slot_txk = lax.broadcasted_iota(jnp.int32, (tiles, k), 0)

    def add_peer(p, carry):
        idx = idx_ref[p]
        # padding peers drop out, as do indices outside the chunk (the wire decoder rejects them)
        ok = (valid_ref[p, 0] > 0) & (idx >= 0) & (idx < chunk_size)
        safe = jnp.where(ok, idx, 0)
        rows = lax.div(safe, jnp.int32(w))
        cols = slot_txk * w + lax.rem(safe, jnp.int32(w))
        vals = values(p)
        _masked_rmw(out_ref, rows, cols, ok, lambda s: s + vals)
        if cnt_ref is not None:
            _masked_rmw(cnt_ref, rows, cols, ok, lambda c: c + jnp.ones((), c.dtype))
        barrier()
        return carry

    lax.fori_loop(0, n_loop_ref[0, 0], add_peer, 0)
    sums = out_ref[...]
    if cnt_ref is not None:  # mean over the peers that selected the coordinate
        counts = cnt_ref[...].astype(jnp.float32)
        dense = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 0.0)
    else:  # paper rule; `sums * (1/n)` as XLA rewrites the pure path's `sums / n` (this
        dense = sums * inv_n_ref[0, 0]  # tensor's n)
    out_ref[...] = dense
    bad_ref[...] = jnp.full(bad_ref.shape, jnp.sum((~jnp.isfinite(dense)).astype(jnp.int32)))


def counts_dtype(peers: int):
    """Per-coordinate peer counts fit int8 up to 127 peers (a quarter of the int32 traffic)."""
    return jnp.int8 if peers <= 127 else jnp.int32


def _pow2_table(table_RxBxN):
    """The code table padded to a power-of-two length (Triton blocks); never read past N."""
    n = table_RxBxN.shape[-1]
    pad = (1 << max(0, n - 1).bit_length()) - n
    return jnp.pad(table_RxBxN, ((0, 0), (0, 0), (0, pad)), constant_values=jnp.nan)


def inverse_counts(n_valid_B, b: int):
    """[B, 1, 1] float32 1 / n per reference tensor (a scalar count applies to every tensor):
    each program reads its tensor's (1, 1) block, a block Mosaic TPU accepts."""
    n = jnp.broadcast_to(jnp.asarray(n_valid_B).astype(jnp.float32), (b,))
    return (1.0 / n).reshape(b, 1, 1)


def scatter_sum_tiles(idx_RxBxCxK, values, n_valid_B, geom: ChunkGeometry, *, rule: str,
                      config: KernelConfig = KernelConfig(), n_loop=None, valid_RxB=None):
    """(dense_BxRowsxCols float32, nonfinite_BxYxBlocksx1 int32); the contract of
    `aggregate.scatter_mean_tiles` (which counts non-finite entries per tile, this per block),
    `config.aggregate_tiles` chunks per program.

    `values`: decoded, clipped values [R, B, C, K], or `Coded` codes and per-peer code tables
    that the kernel decodes itself (so XLA never writes the decoded values out). `valid_RxB`
    (default: all peers) drops padding peers, and peers dropped from one reference tensor;
    `n_valid_B` is the "mean" rule's divisor per tensor. Each peer's indices within a chunk
    must be distinct.
    """
    config = config.resolve("aggregate")
    (h, w), (y, x), k = geom.tile, geom.grid, geom.k
    r, b = idx_RxBxCxK.shape[:2]
    t = config.aggregate_tiles
    grid_5d = (r, b, y, x, k)
    peer_spec = pl.BlockSpec((r, None, None, t, k), lambda bi, yi, xi: (0, bi, yi, xi, 0))
    if isinstance(values, Coded):
        table = _pow2_table(jnp.asarray(values.code_values, jnp.float32))
        value_args = [values.codes.reshape(grid_5d), table]
        value_specs = [peer_spec, pl.BlockSpec((r, None, table.shape[-1]),
                                               lambda bi, yi, xi: (0, bi, 0))]
        n_codes = values.code_values.shape[-1]
    else:
        value_args = [values.astype(jnp.float32).reshape(grid_5d)]
        value_specs, n_codes = [peer_spec], 0
    valid_RxB = jnp.ones((r, b)) if valid_RxB is None else valid_RxB
    valid = (valid_RxB > 0).astype(jnp.int32)[..., None]  # [R, B, 1]
    inv_n_Bx1x1 = inverse_counts(n_valid_B, b)
    n_loop_1x1 = jnp.reshape(jnp.asarray(r if n_loop is None else n_loop, jnp.int32), (1, 1))
    scalar_spec = pl.BlockSpec((1, 1), lambda bi, yi, xi: (0, 0))
    per_tensor_spec = pl.BlockSpec((None, 1, 1), lambda bi, yi, xi: (bi, 0, 0))
    dense_spec = pl.BlockSpec((None, h, w * t), lambda bi, yi, xi: (bi, yi, xi))
    out_specs = [dense_spec]
    out_shape = [jax.ShapeDtypeStruct((b, y * h, x * w), jnp.float32)]
    if rule == "median_clip":  # a scratch the caller drops
        out_specs.append(dense_spec)
        out_shape.append(jax.ShapeDtypeStruct((b, y * h, x * w), counts_dtype(r)))
    out_specs.append(pl.BlockSpec((None, None, 1, 1), lambda bi, yi, xi: (bi, yi, xi, 0)))
    out_shape.append(jax.ShapeDtypeStruct((b, y, x // t, 1), jnp.int32))
    kernel = partial(_scatter_kernel, n_codes=n_codes, w=w, tiles=t,
                     chunk_size=geom.chunk_size, rule=rule, barrier=_barrier(config.backend))
    outs = pl.pallas_call(
        kernel,
        grid=(b, y, x // t),
        in_specs=[peer_spec, *value_specs,
                  pl.BlockSpec((r, None, 1), lambda bi, yi, xi: (0, bi, 0)),
                  per_tensor_spec, scalar_spec],
        out_specs=out_specs,
        out_shape=out_shape,
        name="sparseloco_aggregate_scatter",
        **pallas_call_kwargs(config),
    )(idx_RxBxCxK.reshape(grid_5d), *value_args, valid, inv_n_Bx1x1, n_loop_1x1)
    return outs[0], outs[-1]
