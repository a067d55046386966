"""SPEC 2.1 chunking as array reshapes, batched over leading reference-tensor axes.

A 2-D reference tensor R x C with tile (h, w) becomes [Y*X, h*w] via
`(y h)(x w) -> (y x)(h w)` (row-major inside each tile); a 1-D tensor of n becomes [n/w, w].
All functions take arrays of shape [B, *tensor_shape] (B = flattened batch dims) and return
[B, num_chunks, chunk_size]; `from_chunks` inverts exactly (pure reshapes/transposes).
"""

from __future__ import annotations

import jax.numpy as jnp

from templar_jax.sparseloco.geometry import ChunkGeometry


def to_chunks(x_BxT, geom: ChunkGeometry):
    """[B, *tensor_shape] -> [B, num_chunks, chunk_size]."""
    b = x_BxT.shape[0]
    if len(geom.tile) == 1:
        return x_BxT.reshape(b, geom.num_chunks, geom.chunk_size)
    (h, w), (y, x) = geom.tile, geom.grid
    x_BxYxhxXxw = x_BxT.reshape(b, y, h, x, w)
    return jnp.transpose(x_BxYxhxXxw, (0, 1, 3, 2, 4)).reshape(b, y * x, h * w)


def from_chunks(chunks_BxCxS, geom: ChunkGeometry):
    """[B, num_chunks, chunk_size] -> [B, *tensor_shape] (inverse of `to_chunks`)."""
    b = chunks_BxCxS.shape[0]
    if len(geom.tile) == 1:
        return chunks_BxCxS.reshape(b, geom.grid[0] * geom.tile[0])
    (h, w), (y, x) = geom.tile, geom.grid
    c_BxYxXxhxw = chunks_BxCxS.reshape(b, y, x, h, w)
    return jnp.transpose(c_BxYxXxhxw, (0, 1, 3, 2, 4)).reshape(b, y * h, x * w)
