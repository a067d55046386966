"""Fixed-size Elias-Fano code for k sorted distinct indices out of a chunk of u, per row.

Each index splits into `low` bits (its l least significant bits, packed LSB-first) and a high
part h = idx >> l, written in unary as one set bit at position h + i (i = rank) in a bitmap of
k + ((u - 1) >> l) bits. With l = floor(log2(u / k)) the code is near the information bound and
has a size fixed by (u, k) alone, so all rows encode and decode at once with array operations.
For 64 of 4096: l = 6, 64 * 6 = 384 low bits (48 B) + 127 high bits (16 B) = 64 B per chunk.
When k == u every index is present and the code is empty (`implicit`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from templar_jax.wire.bitpack import pack_uint, packed_bytes, unpack_uint


class EFParams(NamedTuple):
    universe: int  # chunk size u
    k: int  # indices per chunk
    low_bits: int
    high_bits: int  # bitmap length before byte padding

    @property
    def low_bytes(self) -> int:
        return packed_bytes(self.k, self.low_bits)

    @property
    def high_bytes(self) -> int:
        return (self.high_bits + 7) // 8

    @property
    def row_bytes(self) -> int:
        return self.low_bytes + self.high_bytes


def ef_params(universe: int, k: int) -> EFParams:
    if not 0 < k <= universe:
        raise ValueError(f"need 0 < k <= universe, got k={k}, universe={universe}")
    low = (universe // k).bit_length() - 1  # floor(log2(u / k)), 0 when k > u / 2
    return EFParams(universe, k, low, k + ((universe - 1) >> low))


def ef_encode(idx_XxK: np.ndarray, p: EFParams) -> np.ndarray:
    """uint8 [X, row_bytes]; idx must be sorted ascending, distinct, < universe (caller checks)."""
    idx = np.asarray(idx_XxK, np.int32)
    x = idx.shape[0]
    low = pack_uint(idx & ((1 << p.low_bits) - 1), p.low_bits)
    bitmap = np.zeros((x, p.high_bytes * 8), np.uint8)
    pos = (idx >> p.low_bits) + np.arange(p.k, dtype=np.int32)
    np.put_along_axis(bitmap, pos, 1, axis=1)
    high = np.packbits(bitmap, axis=1, bitorder="little")
    return np.concatenate([low, high], axis=1)


class EFDecodeError(ValueError):
    """Raised with a short reason; the wire decoder wraps it in a PayloadError."""


def ef_decode(code_XxB: np.ndarray, p: EFParams) -> np.ndarray:
    """Inverse of ef_encode: int32 [X, k], verified sorted, distinct and < universe."""
    code = np.asarray(code_XxB, np.uint8)
    x = code.shape[0]
    low, low_pad_ok = unpack_uint(code[:, : p.low_bytes], p.k, p.low_bits)
    if not low_pad_ok:
        raise EFDecodeError("nonzero padding bits in low part")
    bitmap = np.unpackbits(code[:, p.low_bytes :], axis=1, bitorder="little")
    if bitmap[:, p.high_bits :].any():
        raise EFDecodeError("nonzero padding bits in high part")
    counts = bitmap.sum(axis=1, dtype=np.int64)
    bad = np.flatnonzero(counts != p.k)
    if bad.size:
        raise EFDecodeError(f"chunk {int(bad[0])} has {int(counts[bad[0]])} high bits set, expected {p.k}")
    # Each set bit's high value = number of zeros before it: a running count of zeros, read at
    # the set bits (row-major, so each row's values come out in rank order).
    zeros_before = np.cumsum(bitmap ^ 1, axis=1, dtype=np.uint8 if bitmap.shape[1] < 256 else np.int32)
    high = zeros_before[bitmap.view(bool)].reshape(x, p.k).astype(np.int32)
    idx = (high << p.low_bits) | low.astype(np.int32)
    check_sorted_in_range(idx, p.universe)
    return idx


def check_sorted_in_range(idx_XxK: np.ndarray, universe: int) -> None:
    """Raise EFDecodeError unless every row is strictly increasing and within [0, universe)."""
    if idx_XxK.size == 0:
        return
    lo, hi = int(idx_XxK.min()), int(idx_XxK.max())
    if lo < 0 or hi >= universe:
        bad = hi if hi >= universe else lo
        raise EFDecodeError(f"index {bad} out of range for chunk of {universe}")
    if idx_XxK.shape[-1] > 1:
        steps = np.diff(idx_XxK, axis=-1)
        if (steps <= 0).any():
            row = int(np.argwhere(steps <= 0)[0][0])
            raise EFDecodeError(f"chunk {row} indices not strictly increasing (unsorted or duplicate)")
