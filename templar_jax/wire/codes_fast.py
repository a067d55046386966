"""2-bit quantization codes, unpacked by table lookup in blocks of rows (on threads when given).

Four codes share a byte (bitpack, LSB first), so two bytes hold eight codes: a 65536-entry table
maps each 16-bit pair of bytes to its eight codes as eight bytes (one uint64), and one lookup per
pair of bytes writes them in place. Same values as `unpack_uint(packed, k, 2)`; row widths the
table does not cover (k not a multiple of 8) go through unpack_uint.
"""

from __future__ import annotations

import sys
from concurrent.futures import Executor
from functools import lru_cache

import numpy as np

from templar_jax.wire.bitpack import unpack_uint
from templar_jax.wire.layout import CODE_BITS
from templar_jax.wire.row_blocks import STREAM_BLOCK_ROWS, all_blocks_ok

CODES_PER_LOOKUP = 8


@lru_cache(maxsize=1)
def codes_table() -> np.ndarray:
    """uint64 [65536]: byte j of entry v is code j of the 16-bit little-endian value v."""
    values = np.arange(1 << 16, dtype=np.uint32)
    codes = ((values[:, None] >> (CODE_BITS * np.arange(CODES_PER_LOOKUP, dtype=np.uint32))) & 3)
    table = codes.astype(np.uint8).view("<u8")[:, 0]
    table.setflags(write=False)  # shared by every thread
    return table


def unpack_codes(packed_XxB: np.ndarray, k: int, pool: Executor | None = None, *,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(codes uint8 [X, k], padding_is_zero), as unpack_uint(packed, k, 2) gives them. `out`
    (uint8 [X, k], C-contiguous): unpack into it where the table applies; use the returned array."""
    packed = np.ascontiguousarray(packed_XxB, np.uint8)
    if k % CODES_PER_LOOKUP or sys.byteorder != "little" or packed.ndim != 2 or packed.shape[1] * 4 != k:
        values, pad_ok = unpack_uint(packed, k, CODE_BITS)
        return values.astype(np.uint8), pad_ok
    rows = packed.shape[0]
    pairs = packed.view("<u2")  # [X, k / 8]
    if out is None:
        out = np.empty((rows, k), np.uint8)
    elif out.shape != (rows, k) or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ValueError(f"out must be C-contiguous uint8 {(rows, k)}, got {out.dtype} {out.shape}")
    out_words = out.view("<u8")  # [X, k / 8]
    table = codes_table()

    def block(start: int, stop: int) -> bool:
        np.take(table, pairs[start:stop], out=out_words[start:stop], mode="clip")  # all in range
        return True

    all_blocks_ok(block, rows, pool, STREAM_BLOCK_ROWS)
    return out, True  # k * 2 bits fill whole bytes: no padding bits
