"""Elias-Fano rows decoded by one compiled loop (numba, the optional extra `fast-decode`).

Why a compiled loop: the NumPy decoder (elias_fano_fast) pays one pass over memory per array
operation and a per-item cost in its gather and scatter; on a 72B decoder layer's indices it
bottoms out near 30 ms on one core (the whole decode near 0.2 of a memcpy of the decoded output),
while this loop, which reads each input byte once and writes each output entry once, takes about
11 ms (docs/results.md, "Streaming decode"). It runs without the GIL, so blocks decode in parallel
on the caller's threads. Without numba the NumPy decoder is used: same values, same errors.

Per row: each bitmap byte's set-bit positions come from a 256-entry table (8 positions, one byte
each, in one uint64) and are stored at the running bit count, so each byte overwrites the unused
tail of the one before; position - rank is the high part. Low part t is read from the two bytes
holding bits l*t .. l*t + l - 1 (the second may be the bitmap's first byte when the low part ends
on a byte boundary: its bits are masked off). A row is accepted under the same
conditions as the NumPy decoder (k set bits, strictly increasing, below the universe); a rejected
row makes the caller run the reference decoder, which raises the exact error.
Each geometry compiles once per process (about a second), with its constants folded in; the
machine code is cached on disk (numba's cache) for the next process.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

from templar_jax.wire.elias_fano import EFParams

# decode(code uint8 [X, row_bytes], out int32 [X, k], start, stop) -> every row in range valid
RowDecoder = Callable[[np.ndarray, np.ndarray, int, int], bool]


@lru_cache(maxsize=1)
def numba_module():
    """numba, imported on first use (0.2 s: not on `import templar_jax.wire`), or None."""
    try:
        import numba
    except ImportError:  # the optional extra is not installed: callers use the NumPy decoder
        return None
    return numba


def available() -> bool:
    return numba_module() is not None


@lru_cache(maxsize=1)
def byte_positions_table() -> np.ndarray:
    """uint64 [256]: byte j of entry v is the position of v's j-th set bit (then zeros)."""
    table = np.zeros((256, 8), np.uint8)
    for value in range(256):
        ones = [bit for bit in range(8) if value >> bit & 1]
        table[value, : len(ones)] = ones
    out = table.view("<u8")[:, 0].copy()
    out.setflags(write=False)
    return out


@lru_cache(maxsize=1)
def byte_popcount_table() -> np.ndarray:
    out = np.array([bin(v).count("1") for v in range(256)], np.uint8)
    out.setflags(write=False)
    return out


def row_decoder(p: EFParams) -> RowDecoder:
    """The compiled decoder of rows of this geometry (the geometries of
    elias_fano_fast.fast_path_supported: k a multiple of 8, at most 8 low bits, a bitmap of at
    least 2 bytes). RuntimeError without numba."""
    if not available():
        raise RuntimeError("numba is not installed (pip install 'templar-jax[fast-decode]')")
    return _compiled_row_decoder(p)


@lru_cache(maxsize=None)
def _compiled_row_decoder(p: EFParams) -> RowDecoder:
    numba = numba_module()
    k, low_bits, low_bytes, high_bytes, universe = p.k, p.low_bits, p.low_bytes, p.high_bytes, p.universe
    low_mask = np.int32((1 << low_bits) - 1)
    positions, popcounts = byte_positions_table(), byte_popcount_table()
    byte_step = np.uint64(0x0808080808080808)  # + 8 on each of a byte's 8 positions per byte index

    def decode_rows(code, out, start, stop):
        found = np.empty(8 * high_bytes + 8, np.uint8)  # room for a bad row's extra set bits
        for r in range(start, stop):
            n = 0
            for j in range(high_bytes):
                byte = code[r, low_bytes + j]
                listed = positions[byte] + byte_step * np.uint64(j)
                for q in range(8):
                    found[n + q] = np.uint8((listed >> np.uint64(8 * q)) & np.uint64(0xFF))
                n += popcounts[byte]
            if n != k:
                return False
            for t in range(k):  # low part t: bits l*t .. l*t + l - 1, inside two bytes (l <= 8)
                bit = low_bits * t
                pair = np.int32(code[r, bit >> 3]) | (np.int32(code[r, (bit >> 3) + 1]) << 8)
                out[r, t] = ((np.int32(found[t]) - t) << low_bits) | ((pair >> (bit & 7)) & low_mask)
            bad = np.int32(out[r, k - 1] >= universe)
            for t in range(1, k):  # no early exit: the loop vectorizes
                bad |= np.int32(out[r, t] <= out[r, t - 1])
            if bad:
                return False
        return True

    try:
        return numba.njit(nogil=True, boundscheck=False, cache=True)(decode_rows)
    except RuntimeError:  # no writable cache directory (numba: "no locator available"): compile each run
        return numba.njit(nogil=True, boundscheck=False)(decode_rows)
