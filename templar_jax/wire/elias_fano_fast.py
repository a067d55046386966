"""Streaming, vectorized Elias-Fano decode: the same result and the same errors as ef_decode.

Rows are decoded in cache-sized blocks (row_blocks), optionally on several threads. Per block:
- High part, read as 16-bit chunks of the bitmap. A 65536-entry table lists each chunk value's
  set-bit positions left-packed in 16 bytes. The chunks' popcounts (at most 8 chunks, one byte
  each: one uint64 per row) times 0x0101010101010101 give their running sums S_m, where chunk
  m's bits start in the row's rank order. Each chunk's 16 bytes (positions + 16 m) are written
  at row offset S_m, chunk after chunk, so each chunk overwrites the unused tail of the one
  before; the row then holds the positions p_i of its k set bits in rank order: high_i = p_i - i.
- Low part: 8 values of l bits fill exactly l bytes; one uint64 read at byte stride l holds
  them, and three shift-and-mask steps move value t from bit l*t to byte t.
- The checks (bit count per row, strictly increasing, in range) are whole-block booleans. A set
  padding bit needs no check of its own: its high part, at least ((u - 1) >> l) + 1, puts the
  index out of range. If any row fails, the whole tensor goes through the reference decoder,
  which raises the exact EFDecodeError (naming the first bad row).
Geometries these tricks do not cover (k not a multiple of 8, a bitmap of an odd number of bytes
or over 16 bytes, over 8 low bits, chunks over 65536) use the reference decoder.
"""

from __future__ import annotations

import sys
from concurrent.futures import Executor
from functools import lru_cache

import numpy as np

from templar_jax.wire.elias_fano import EFParams, ef_decode
from templar_jax.wire.row_blocks import all_blocks_ok

CHUNK_BITS = 16
MAX_CHUNKS = 8  # running sums of one byte per chunk must fit one uint64
_BYTE_SUMS = np.uint64(0x0101010101010101)  # x * this: byte m of the product = sum of bytes 0..m


def fast_path_supported(p: EFParams) -> bool:
    high_chunks, odd = divmod(p.high_bytes, 2)
    return (
        sys.byteorder == "little"  # the uint64 views below read bytes little-endian
        and p.k % 8 == 0
        and p.universe <= 1 << 16  # indices fit uint16 until the final int32 copy
        and 0 < high_chunks <= MAX_CHUNKS
        and not odd
        and p.low_bits <= 8
        # the last low window (8 bytes at byte l * (k/8 - 1)) stays inside its row
        and (p.low_bits == 0 or p.low_bits * (p.k // 8 - 1) + 8 <= p.row_bytes)
    )


@lru_cache(maxsize=1)
def chunk_positions_table() -> np.ndarray:
    """uint8 [65536, 16]: row v lists the set-bit positions of v ascending, then zeros."""
    values = np.arange(1 << CHUNK_BITS, dtype=np.uint32)
    bits = ((values[:, None] >> np.arange(CHUNK_BITS, dtype=np.uint32)) & 1).astype(bool)
    rank = np.cumsum(bits, axis=1) - 1
    table = np.zeros((1 << CHUNK_BITS, CHUNK_BITS), np.uint8)
    rows, pos = np.nonzero(bits)
    table[rows, rank[rows, pos]] = pos
    table.setflags(write=False)  # shared by every thread
    return table


@lru_cache(maxsize=1)
def chunk_popcount_table() -> np.ndarray:
    """uint8 [65536]: set bits of each 16-bit value (np.bitwise_count needs NumPy 2)."""
    values = np.arange(1 << CHUNK_BITS, dtype=np.uint32)
    table = ((values[:, None] >> np.arange(CHUNK_BITS, dtype=np.uint32)) & 1).sum(axis=1).astype(np.uint8)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=None)
def spread_steps(width: int) -> tuple[tuple[np.uint64, np.uint64, np.uint64], ...]:
    """(keep mask, move mask, shift) steps taking 8 packed `width`-bit fields (field t at bit
    width*t) to one byte each (field t at bit 8t): field t moves by (8 - width) * t, as the sum
    of the shifts for the bits of t, largest first so no field runs into another."""
    at = [width * t for t in range(8)]
    steps = []
    for bit in (4, 2, 1):
        shift = (8 - width) * bit
        keep = move = 0
        for t in range(8):
            field = ((1 << width) - 1) << at[t]
            if t & bit:
                move |= field
                at[t] += shift
            else:
                keep |= field
        steps.append((np.uint64(keep), np.uint64(move), np.uint64(shift)))
    return tuple(steps)


def _popcounts(chunks_BxC: np.ndarray, out_BxC: np.ndarray) -> None:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2
        np.bitwise_count(chunks_BxC, out=out_BxC)
    else:
        np.take(chunk_popcount_table(), chunks_BxC, out=out_BxC)


def _high_positions(chunks_BxC: np.ndarray, k: int) -> np.ndarray | None:
    """uint8 [B, k]: positions of each row's set bits in rank order; None if a row has != k."""
    b, c = chunks_BxC.shape
    counts = np.zeros((b, MAX_CHUNKS), np.uint8)
    _popcounts(chunks_BxC, counts[:, :c])
    counts_u64 = counts.view(np.uint64)[:, 0]
    running = counts_u64 * _BYTE_SUMS  # byte m: bits in chunks 0..m; byte 7: the row's total
    if ((running >> np.uint64(56)) != k).any():
        return None
    starts = (running - counts_u64).view(np.uint8).reshape(b, MAX_CHUNKS)[:, :c]
    row_stride = k + CHUNK_BITS  # a chunk's 16 bytes written at start <= k stay in the row
    dst_offsets = np.empty((c, b), np.intp)
    np.add(starts.T, np.arange(0, b * row_stride, row_stride), out=dst_offsets)
    positions = np.take(chunk_positions_table(), chunks_BxC.T, axis=0, mode="clip")  # [C, B, 16]
    for m in range(1, c):
        np.add(positions[m], CHUNK_BITS * m, out=positions[m])
    scratch = np.empty(b * row_stride + CHUNK_BITS, np.uint8)
    rows = scratch[: b * row_stride].reshape(b, row_stride)
    rows[:, :CHUNK_BITS] = positions[0]  # chunk 0 starts every row: a plain copy
    # Overlapping 16-byte slots at every byte offset: slot j covers scratch[j : j + 16].
    slots = np.ndarray((b * row_stride,), dtype=f"V{CHUNK_BITS}", buffer=scratch, strides=(1,))
    blocks = positions.view(f"V{CHUNK_BITS}").reshape(c, b)
    for m in range(1, c):  # in chunk order: a later chunk overwrites an earlier one's spare bytes
        slots[dst_offsets[m]] = blocks[m]
    return rows[:, :k]


def _low_values(code_BxR: np.ndarray, p: EFParams) -> np.ndarray:
    """uint8 [B, k]: the packed low bits, one value per byte."""
    b = code_BxR.shape[0]
    width = p.low_bits
    windows = np.ndarray((b, p.k // 8), "<u8", buffer=code_BxR, strides=(code_BxR.strides[0], width))
    low = windows & np.uint64((1 << (8 * width)) - 1)
    if width < 8:
        moved = np.empty_like(low)
        for keep, move, shift in spread_steps(width):
            np.bitwise_and(low, move, out=moved)
            moved <<= shift
            low &= keep
            low |= moved
    return low.view(np.uint8).reshape(b, p.k)


@lru_cache(maxsize=None)
def _ranks(k: int) -> np.ndarray:
    ranks = np.arange(k, dtype=np.uint8)
    ranks.setflags(write=False)
    return ranks


def _decode_block(code: np.ndarray, p: EFParams, out: np.ndarray, start: int, stop: int) -> bool:
    block = code[start:stop]
    positions = _high_positions(block[:, p.low_bytes :].view("<u2"), p.k)
    if positions is None:
        return False
    np.subtract(positions, _ranks(p.k), out=positions)  # position - rank = high part
    idx = positions.astype(np.uint16)
    if p.low_bits:
        idx <<= np.uint16(p.low_bits)
        idx |= _low_values(block, p)
    flat = idx.reshape(-1)
    not_increasing = flat[1:] <= flat[:-1]
    not_increasing[p.k - 1 :: p.k] = False  # each row's last index against the next row's first
    if not_increasing.any() or int(idx[:, -1].max(initial=0)) >= p.universe:
        return False
    out[start:stop] = idx
    return True


def ef_decode_fast(code_XxB: np.ndarray, p: EFParams, pool: Executor | None = None) -> np.ndarray:
    """Same as ef_decode (int32 [X, k], or EFDecodeError), in cache-sized blocks on `pool`."""
    code = np.ascontiguousarray(code_XxB, np.uint8)
    if not fast_path_supported(p) or code.ndim != 2 or code.shape[1] != p.row_bytes:
        return ef_decode(code, p)
    chunk_positions_table(), chunk_popcount_table()  # build once, before any thread needs them
    out = np.empty((code.shape[0], p.k), np.int32)
    if all_blocks_ok(lambda s, e: _decode_block(code, p, out, s, e), code.shape[0], pool):
        return out
    return ef_decode(code, p)  # a bad row: the reference raises its exact error
