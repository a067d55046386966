"""Chunk geometry of SPEC sec. 2.1/2.2: how a tensor shape splits into chunks and how many
values each chunk sends. Pure Python on shapes (no arrays), shared by sparseloco and wire.

A parameter of shape `batch_shape + tensor_shape` (batch_shape = (L,) for the stacked layer
params, () otherwise; tensor_shape 1-D or 2-D) is prod(batch_shape) independent reference
tensors, each chunked by `chunk_geometry(tensor_shape)`.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class CompressionConfigError(ValueError):
    """A parameter shape or option that SparseLoCo cannot compress."""


def split(n: int, target: int = 64) -> int:
    """Largest divisor of n that is <= target (n itself when n <= target; 1 for a big prime)."""
    if n <= 0:
        raise ValueError(f"dimension must be positive, got {n}")
    if n <= target:
        return n
    for d in range(target, 0, -1):
        if n % d == 0:
            return d
    return 1  # unreachable: 1 divides n


class ChunkGeometry(NamedTuple):
    tile: tuple[int, ...]  # (h, w) for 2-D tensors, (w,) for 1-D
    grid: tuple[int, ...]  # number of tiles along each dim
    num_chunks: int
    chunk_size: int
    k: int


def clamp_k(topk: int, chunk_size: int) -> int:
    """k clamped to the chunk, at least 2, rounded down to even (never above the chunk)."""
    k = min(topk, chunk_size)
    k = max(k, 2)
    k -= k % 2
    return min(k, chunk_size)


def chunk_geometry(shape: tuple[int, ...], *, chunk: int = 64, topk: int = 64) -> ChunkGeometry:
    """Geometry of one reference tensor (1-D or 2-D; no batch dims)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (1, 2):
        raise ValueError(f"SparseLoCo chunks 1-D and 2-D tensors, got shape {shape}")
    tile = tuple(split(s, chunk) for s in shape)
    grid = tuple(s // t for s, t in zip(shape, tile))
    num_chunks = 1
    for g in grid:
        num_chunks *= g
    chunk_size = 1
    for t in tile:
        chunk_size *= t
    return ChunkGeometry(tile, grid, num_chunks, chunk_size, clamp_k(topk, chunk_size))


def tensor_geometry(shape, batch_ndim: int = 0, *, chunk: int = 64, topk: int = 64):
    """(batch_shape, ChunkGeometry of the reference tensor) for a parameter shape."""
    shape = tuple(int(s) for s in shape)
    if batch_ndim < 0 or len(shape) - batch_ndim not in (1, 2):
        raise CompressionConfigError(
            f"shape {shape} with {batch_ndim} batch dim(s) is not a batch of 1-D/2-D tensors")
    return shape[:batch_ndim], chunk_geometry(shape[batch_ndim:], chunk=chunk, topk=topk)


def flat_batch(batch_shape) -> int:
    """Reference tensors in a batch shape (1 for an unstacked parameter)."""
    return math.prod(batch_shape) if batch_shape else 1
