"""Random but valid payloads for tests and benchmarks (no compressor needed)."""

from __future__ import annotations

import numpy as np

from templar_jax.sparseloco.payload import Payload, TensorPayload
from templar_jax.wire.expected import ExpectedTable, ExpectedTensor


def random_sorted_indices(rng: np.random.Generator, rows: int, k: int, universe: int) -> np.ndarray:
    """int32 [rows, k], each row strictly increasing in [0, universe), without a per-row loop.

    Sorted draws with replacement from [0, universe - k] plus the rank are strictly increasing.
    """
    draws = np.sort(rng.integers(0, universe - k + 1, size=(rows, k), dtype=np.int32), axis=1)
    return draws + np.arange(k, dtype=np.int32)


def random_tensor_payload(rng: np.random.Generator, et: ExpectedTensor, *, chunk: int = 64, topk: int = 64) -> TensorPayload:
    geo = et.geometry(chunk=chunk, topk=topk)
    batch = et.batch_shape
    rows = et.batch_size * geo.num_chunks
    idx = random_sorted_indices(rng, rows, geo.k, geo.chunk_size).reshape(batch + (geo.num_chunks, geo.k))
    codes = rng.integers(0, 4, size=idx.shape, dtype=np.uint8)
    shift = rng.standard_normal(batch).astype(np.float32)
    scale = (rng.random(batch) + 0.5).astype(np.float32)
    lut = rng.standard_normal(batch + (4,)).astype(np.float32)
    return TensorPayload(idx, codes, shift, scale, lut)


def random_payload(rng: np.random.Generator, table: ExpectedTable, *, chunk: int = 64, topk: int = 64) -> Payload:
    return {name: random_tensor_payload(rng, et, chunk=chunk, topk=topk) for name, et in table.items()}


def overflowing(tp: TensorPayload) -> TensorPayload:
    """A hostile copy of `tp`: shift and lut each finite (float32's largest value), but every
    value decodes to lut + shift = inf. Indices and codes stay the real ones, so only the range
    check in `decode` (and the aggregation's own guard) can catch it."""
    big = np.finfo(np.float32).max
    shift = np.full(np.shape(tp.shift), big, np.float32)
    lut = np.full(np.shape(tp.lut), big, np.float32)
    return tp._replace(shift=shift, lut=lut)


def overflow_payload(like: Payload) -> Payload:
    """`overflowing` applied to every tensor of a real payload."""
    return {name: overflowing(tp) for name, tp in like.items()}
