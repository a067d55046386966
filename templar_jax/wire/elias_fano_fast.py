"""Streaming, vectorized Elias-Fano decode: the same result and the same errors as ef_decode.

Rows are decoded in cache-sized blocks (row_blocks), optionally on several threads, each thread
with its own preallocated scratch arrays. Each step is one NumPy call over a whole block, most of
them laid out so that the call loops over the block in one flat pass (a loop over rows of 64
entries pays NumPy's per-row overhead instead). Per block:
- High part, read as C 16-bit chunks of the bitmap per row. A 65536-entry table lists each chunk
  value's set-bit positions left-packed in 16 bytes. The chunks' popcounts (one byte each, at most
  8: one uint64 per row) times 0x0101010101010101 give their running sums S_m, where chunk m's
  bits start in the row's rank order. One gather takes every chunk's 16 bytes from the table, one
  uint64 add puts 16 m on chunk m's bytes, and one scatter writes them at row offset S_m: row after
  row in chunk order, so each chunk overwrites the unused tail of the one before (rows are k + 16
  bytes apart, so a tail never reaches the next row). Row r then holds the positions p_i of its k
  set bits in rank order, and one flat subtraction of the rank gives the high parts p_i - i.
- Low part: 8 values of l bits fill exactly l bytes; one uint64 read at byte stride l holds
  them, and three mask-multiply-add steps move value t from bit l*t to byte t.
- Index = high << l | low, assembled in uint16 (widened once, shifted as uint64 words: a high
  part << l never leaves its 16 bits), checked, then written once to the int32 output.
- The checks (bit count per row, strictly increasing, in range) are whole-block booleans. A set
  padding bit needs no check of its own: its high part, at least ((u - 1) >> l) + 1, puts the
  index out of range. If any row fails, the whole tensor goes through the reference decoder,
  which raises the exact EFDecodeError (naming the first bad row).
Geometries these tricks do not cover (k not a multiple of 8, a bitmap of an odd number of bytes
or over 16 bytes, over 8 low bits, chunks over 65536) use the reference decoder.
When numba is installed (extra `fast-decode`), ef_decode_fast runs elias_fano_jit's compiled row
loop on the same blocks instead of these array passes (2.5-3x as fast; see that module).
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import Executor
from functools import lru_cache

import numpy as np

from templar_jax.wire import elias_fano_jit
from templar_jax.wire.elias_fano import EFParams, ef_decode
from templar_jax.wire.row_blocks import BLOCK_ROWS, STREAM_BLOCK_ROWS, all_blocks_ok

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
def spread_steps(width: int) -> tuple[tuple[np.uint64, np.uint64], ...]:
    """(move mask, multiplier) steps taking 8 packed `width`-bit fields (field t at bit width*t)
    to one byte each (field t at bit 8t): field t moves by (8 - width) * t, as the sum of the
    shifts for the bits of t, largest first so no field runs into another. A step adds
    (x & move) * (2**shift - 1) to x: the moved fields' bits, shifted, minus where they were."""
    at = [width * t for t in range(8)]
    steps = []
    for bit in (4, 2, 1):
        shift = (8 - width) * bit
        move = 0
        for t in range(8):
            if t & bit:
                move |= ((1 << width) - 1) << at[t]
                at[t] += shift
        steps.append((np.uint64(move), np.uint64((1 << shift) - 1)))
    return tuple(steps)


@lru_cache(maxsize=8)
def _block_constants(rows: int, k: int, chunks: int) -> dict[str, np.ndarray]:
    """Per-geometry arrays for blocks of up to `rows` rows (a shorter block uses a prefix)."""
    stride = k + CHUNK_BITS
    consts = {
        # where chunk m of row r starts before adding S_m: r * stride
        "row_base": np.repeat(np.arange(0, rows * stride, stride, dtype=np.intp), chunks),
        "ranks": np.tile(np.arange(stride, dtype=np.uint8), rows),  # wraps past 255: unused bytes only
        # 16 m on each of chunk m's 16 position bytes, as two uint64 words per chunk
        "chunk_offsets": np.tile(np.repeat(np.arange(chunks, dtype=np.uint64) * (CHUNK_BITS * _BYTE_SUMS), 2),
                                 rows),
        "same_row": np.arange(1, rows * k) % k != 0,  # flat neighbours (j - 1, j) in one row
    }
    for value in consts.values():
        value.setflags(write=False)  # shared by every thread
    return consts


class _Scratch(threading.local):
    """One thread's work arrays, reused block after block (allocating them per block would map
    and zero fresh pages each time)."""

    key: tuple | None = None
    arrays: dict[str, np.ndarray]

    def get(self, rows: int, k: int, chunks: int, low_words: int) -> dict[str, np.ndarray]:
        key = (rows, k, chunks, low_words)
        if self.key != key:
            stride = k + CHUNK_BITS
            self.arrays = {
                "counts": np.zeros((rows, MAX_CHUNKS), np.uint8),  # chunks past C stay 0
                "running": np.empty(rows, np.uint64),
                "dst": np.empty((rows, chunks), np.intp),
                "lists": np.empty((rows, chunks), f"V{CHUNK_BITS}"),
                "positions": np.empty(rows * stride + CHUNK_BITS, np.uint8),  # + one slot past the end
                "index": np.empty((rows, k), np.uint16),
                "low": np.empty((rows, low_words), np.uint64),
                "moved": np.empty((rows, low_words), np.uint64),
                "not_increasing": np.empty(rows * k - 1, bool),
            }
            self.key = key
        return self.arrays


_SCRATCH = _Scratch()


def _popcounts(chunks_BxC: np.ndarray, out_BxC: np.ndarray) -> None:
    if hasattr(np, "bitwise_count"):  # NumPy >= 2
        np.bitwise_count(chunks_BxC, out=out_BxC)
    else:
        np.take(chunk_popcount_table(), chunks_BxC, out=out_BxC)


def _high_parts(chunks_BxC: np.ndarray, k: int, work: dict, consts: dict) -> np.ndarray | None:
    """uint8 [B, k + 16] (a view of work["positions"]): each row's high parts in rank order, then
    16 unused bytes; None if a row has != k set bits."""
    b, c = chunks_BxC.shape
    stride = k + CHUNK_BITS
    counts = work["counts"][:b]
    _popcounts(chunks_BxC, counts[:, :c])
    counts_u64 = counts.view(np.uint64)[:, 0]
    running = work["running"][:b]
    np.multiply(counts_u64, _BYTE_SUMS, out=running)  # byte m: bits in chunks 0..m; byte 7: the total
    if ((running >> np.uint64(56)) != k).any():
        return None
    running -= counts_u64  # byte m: S_m, bits before chunk m
    dst = work["dst"][:b]
    np.add(running.view(np.uint8).reshape(b, MAX_CHUNKS)[:, :c], consts["row_base"][: b * c].reshape(b, c), out=dst)
    lists = work["lists"][:b]
    np.take(chunk_positions_table().view(f"V{CHUNK_BITS}")[:, 0], chunks_BxC, out=lists, mode="clip")
    words = lists.view(np.uint64).reshape(-1)
    words += consts["chunk_offsets"][: words.size]
    positions = work["positions"]
    # Overlapping 16-byte slots at every byte offset: slot j covers positions[j : j + 16].
    slots = np.ndarray((b * stride,), dtype=f"V{CHUNK_BITS}", buffer=positions, strides=(1,))
    slots[dst.reshape(-1)] = lists.reshape(-1)  # row by row, chunk after chunk
    flat = positions[: b * stride]
    np.subtract(flat, consts["ranks"][: b * stride], out=flat)  # position - rank = high part
    return flat.reshape(b, stride)


def _low_values(code_BxR: np.ndarray, p: EFParams, work: dict) -> np.ndarray:
    """uint8 [B, k]: the packed low bits, one value per byte."""
    b = code_BxR.shape[0]
    width = p.low_bits
    windows = np.ndarray((b, p.k // 8), "<u8", buffer=code_BxR, strides=(code_BxR.strides[0], width))
    low, moved = work["low"][:b], work["moved"][:b]
    np.bitwise_and(windows, np.uint64((1 << (8 * width)) - 1), out=low)
    if width < 8:
        for move, multiplier in spread_steps(width):
            np.bitwise_and(low, move, out=moved)
            moved *= multiplier
            low += moved
    return low.view(np.uint8).reshape(b, p.k)


def _decode_block(code: np.ndarray, p: EFParams, out: np.ndarray, start: int, stop: int) -> bool:
    block = code[start:stop]
    b, k = block.shape[0], p.k
    chunks = p.high_bytes // 2
    work = _SCRATCH.get(max(b, BLOCK_ROWS), k, chunks, k // 8)
    consts = _block_constants(max(b, BLOCK_ROWS), k, chunks)
    high = _high_parts(block[:, p.low_bytes :].view("<u2"), k, work, consts)
    if high is None:
        return False
    idx = work["index"][:b]
    np.copyto(idx, high[:, :k])
    if p.low_bits:
        idx_words = idx.view(np.uint64)
        idx_words <<= np.uint64(p.low_bits)  # a high part << l stays inside its 16 bits
        np.bitwise_or(idx, _low_values(block, p, work), out=idx)
    flat = idx.reshape(-1)
    not_increasing = work["not_increasing"][: flat.size - 1]
    np.less_equal(flat[1:], flat[:-1], out=not_increasing)
    not_increasing &= consts["same_row"][: not_increasing.size]  # each row's last vs the next row's first
    if not_increasing.any() or int(idx[:, -1].max(initial=0)) >= p.universe:
        return False
    out[start:stop] = idx
    return True


def ef_decode_fast(code_XxB: np.ndarray, p: EFParams, pool: Executor | None = None, *,
                   compiled: bool | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Same as ef_decode (int32 [X, k], or EFDecodeError), in cache-sized blocks on `pool`.
    `compiled`: decode with elias_fano_jit's compiled loop (None: when numba is installed; True
    requires it) or with NumPy (False); both give the same result. `out` (int32 [X, k],
    C-contiguous): decode into it where the fast path applies; use the returned array."""
    code = np.ascontiguousarray(code_XxB, np.uint8)
    if not fast_path_supported(p) or code.ndim != 2 or code.shape[1] != p.row_bytes:
        return ef_decode(code, p)
    if out is None:
        out = np.empty((code.shape[0], p.k), np.int32)
    elif out.shape != (code.shape[0], p.k) or out.dtype != np.int32 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous int32 {(code.shape[0], p.k)}, got {out.dtype} {out.shape}")
    if compiled or (compiled is None and elias_fano_jit.available()):
        rows = elias_fano_jit.row_decoder(p)
        block, block_rows = (lambda s, e: rows(code, out, s, e)), STREAM_BLOCK_ROWS
    else:
        chunk_positions_table(), chunk_popcount_table()  # build once, before any thread needs them
        block, block_rows = (lambda s, e: _decode_block(code, p, out, s, e)), BLOCK_ROWS
    if all_blocks_ok(block, code.shape[0], pool, block_rows):
        return out
    return ef_decode(code, p)  # a bad row: the reference raises its exact error
