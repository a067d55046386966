"""Compression of one parameter tensor (SPEC 2.1-2.3) plus the error-feedback step.

    e       <- beta * e + delta
    payload  = Q_2bit(TopK_chunk(e))     per reference tensor (`codec`)
    e       <- e - decode(payload)       (the residual keeps what was not sent)

`ef_compress_tensor` is the pure core on one block of chunks (a whole tensor, or one device's
shard under `shard_map`); the Pallas core (`kernels.compress.ef_compress_tensor_pallas`) has
its contract. Reference API: `compress_tensor` (`compress_dense` over a flat dict of tensors;
`topk_rows` its indices at a few chunks), `decompress_tensor`, `null_payload` (NumPy or jax in;
jax out).
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.chunking import from_chunks, to_chunks
from templar_jax.sparseloco.geometry import ChunkGeometry, flat_batch, tensor_geometry
from templar_jax.sparseloco.payload import TensorPayload, flat_payload, unflatten_payload


def ef_compress_tensor(e, delta, *, beta: float, geom: ChunkGeometry, bins: int = 4,
                       sigma_range: float = 6.0, axis_names: Sequence[str] = ()):
    """e <- beta*e + delta; payload = Q(TopK(e)); e <- e - decode(payload).

    `e`/`delta` have shape [*batch, *tensor] (local shard shape under shard_map, with `geom`
    describing the local chunk grid and `axis_names` the mesh axes whose psum completes the
    quantizer statistics). Returns (TensorPayload with arrays shaped [*batch, num_chunks, k],
    new e with e's dtype).
    """
    batch_shape = e.shape[: e.ndim - len(geom.tile)]
    b = flat_batch(batch_shape)
    acc = (beta * e.astype(jnp.float32) + delta.astype(jnp.float32)).astype(e.dtype)
    chunks = to_chunks(acc.reshape((b,) + acc.shape[len(batch_shape):]), geom)
    idx, codes, shift, scale, lut, residual = codec.ef_compress_chunks(
        chunks, geom.k, bins=bins, sigma_range=sigma_range, axis_names=axis_names)
    new_e = from_chunks(residual, geom).reshape(e.shape)
    return unflatten_payload(TensorPayload(idx, codes, shift, scale, lut), batch_shape), new_e


def decode_values(p: TensorPayload, batch_shape):
    """(idx [B,C,K], dequantized values [B,C,K] float32) of one payload."""
    fp = flat_payload(p, batch_shape)
    return fp.idx, codec.dequantize(fp.codes, fp.shift, fp.lut)


def decode_dense(p: TensorPayload, shape, batch_ndim: int = 0, *, chunk: int = 64):
    """Dense float32 tensor of `shape` that a single payload decodes to (jittable)."""
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    idx, vals = decode_values(p, batch_shape)
    zeros = jnp.zeros((idx.shape[0], geom.num_chunks, geom.chunk_size), jnp.float32)
    return from_chunks(codec.scatter_add(zeros, idx, vals), geom).reshape(shape)


@partial(jax.jit, static_argnames=("geom", "bins", "sigma_range"))
def _compress_jit(x, *, geom, bins, sigma_range):
    return ef_compress_tensor(jnp.zeros_like(x), x, beta=0.0, geom=geom, bins=bins,
                              sigma_range=sigma_range)[0]


def compress_tensor(x, *, topk: int = 64, chunk: int = 64, bins: int = 4,
                    sigma_range: float = 6.0, batch_ndim: int = 0) -> TensorPayload:
    """Top-k per chunk + 2-bit quantization of one tensor (no error feedback).

    Returns TensorPayload(idx [*, num_chunks, k] int32 sorted ascending per chunk, codes uint8,
    shift f32, scale f32, lut f32[4]) with the batch dims (if any) first.
    """
    x = jnp.asarray(x, jnp.float32)
    _, geom = tensor_geometry(x.shape, batch_ndim, chunk=chunk, topk=topk)
    return _compress_jit(x, geom=geom, bins=bins, sigma_range=float(sigma_range))


def compress_dense(dense, *, topk: int, chunk: int, batch_dims) -> dict[str, TensorPayload]:
    """`compress_tensor` of every tensor of a flat {name: array} (no error feedback): a dense
    update (e.g. a window's aggregate) as a peer would upload it; host arrays."""
    return {name: jax.device_get(compress_tensor(x, topk=topk, chunk=chunk, batch_ndim=batch_dims.get(name, 0)))
            for name, x in dense.items()}


@partial(jax.jit, static_argnames=("geom", "b"))
def _topk_rows_jit(x, rows, *, geom, b):
    chunks = to_chunks(x.reshape((b,) + x.shape[x.ndim - len(geom.tile):]), geom)
    picked = jnp.take(chunks.reshape(-1, geom.chunk_size), rows, axis=0)
    return codec.select_topk(picked[None], geom.k)[0][0]


def topk_rows(x, rows, *, topk: int, chunk: int, batch_ndim: int = 0) -> np.ndarray:
    """int32 [len(rows), k]: `compress_tensor(x).idx` at the given chunk rows (rows of the
    [*batch, num_chunks] grid, row-major), without selecting the other chunks."""
    x = jnp.asarray(x, jnp.float32)
    batch_shape, geom = tensor_geometry(x.shape, batch_ndim, chunk=chunk, topk=topk)
    return np.asarray(_topk_rows_jit(x, jnp.asarray(rows, jnp.int32), geom=geom, b=flat_batch(batch_shape)))


def topk_rows_of(dense, rows, *, topk: int, chunk: int, batch_dims) -> dict[str, np.ndarray]:
    """`topk_rows` of each tensor of a flat {name: array} named in `rows` {name: row indices}."""
    return {name: topk_rows(dense[name], r, topk=topk, chunk=chunk, batch_ndim=batch_dims.get(name, 0))
            for name, r in rows.items() if name in dense}


_decode_dense_jit = jax.jit(decode_dense, static_argnames=("shape", "batch_ndim", "chunk"))


def decompress_tensor(payload: TensorPayload, shape, *, chunk: int = 64, batch_ndim: int = 0):
    """Dense float32 array of `shape` holding the payload's dequantized values, zeros elsewhere."""
    return _decode_dense_jit(payload, tuple(int(s) for s in shape), batch_ndim, chunk=chunk)


def null_payload(shape, batch_ndim: int = 0, *, chunk: int = 64, topk: int = 64) -> TensorPayload:
    """A well-formed payload that decodes to zeros (SPEC 1, null rounds): lut = 0, shift = 0."""
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk, topk=topk)
    idx = np.broadcast_to(np.arange(geom.k, dtype=np.int32),
                          batch_shape + (geom.num_chunks, geom.k)).copy()
    return TensorPayload(
        idx=idx,
        codes=np.zeros(idx.shape, np.uint8),
        shift=np.zeros(batch_shape, np.float32),
        scale=np.ones(batch_shape, np.float32),
        lut=np.zeros(batch_shape + (4,), np.float32),
    )
