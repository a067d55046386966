"""Fixed-width unsigned integer packing, LSB-first, one packed row per input row.

Bit j of a row's bit stream lives in byte j // 8 at bit j % 8. Value i of width w occupies stream
bits [i*w, (i+1)*w). With w = 12 a pair (a, b) packs to exactly the reference's 3 bytes
`a & 0xFF, ((a >> 8) & 0xF) | ((b & 0xF) << 4), (b >> 4) & 0xFF`; with w = 2 four codes share a
byte. Vectorized over all rows: whole groups of values that fill a whole number of bytes are
combined into one uint64 word, then split into bytes (no Python loop over rows).
"""

from __future__ import annotations

import math

import numpy as np


def packed_bytes(n: int, width: int) -> int:
    """Bytes for n values of `width` bits in one row."""
    return (n * width + 7) // 8


def _group(width: int) -> tuple[int, int] | None:
    """(values, bytes) per whole-byte group, or None when the group would not fit 64 bits."""
    bits = math.lcm(width, 8)
    if bits > 64:
        return None
    return bits // width, bits // 8


def pack_uint(values_XxN: np.ndarray, width: int) -> np.ndarray:
    """Pack values (each < 2**width) of every row into uint8 [X, packed_bytes(N, width)]."""
    values_XxN = np.asarray(values_XxN)
    x, n = values_XxN.shape
    nbytes = packed_bytes(n, width)
    if width == 0 or n == 0:
        return np.zeros((x, nbytes), np.uint8)
    group = _group(width)
    if group is None:  # rare widths: go through an explicit bit matrix
        shifts = np.arange(width, dtype=np.uint32)
        bits = ((values_XxN.astype(np.uint32)[..., None] >> shifts) & 1).astype(np.uint8)
        bits = bits.reshape(x, n * width)
        return np.packbits(bits, axis=1, bitorder="little")[:, :nbytes]
    per, gbytes = group
    wtype = np.uint32 if gbytes <= 4 else np.uint64
    ngroups = -(-n // per)
    if ngroups * per == n:
        padded = values_XxN.astype(wtype, copy=False).reshape(x, ngroups, per)
    else:
        padded = np.zeros((x, ngroups * per), wtype)
        padded[:, :n] = values_XxN
        padded = padded.reshape(x, ngroups, per)
    word = np.zeros((x, ngroups), wtype)
    for i in range(per):  # loop over the few values in a group, not over rows
        word |= padded[:, :, i] << wtype(i * width)
    out = np.empty((x, ngroups, gbytes), np.uint8)
    for b in range(gbytes):
        out[:, :, b] = (word >> wtype(8 * b)).astype(np.uint8)
    return out.reshape(x, ngroups * gbytes)[:, :nbytes]


def unpack_uint(packed_XxB: np.ndarray, n: int, width: int) -> tuple[np.ndarray, bool]:
    """Inverse of pack_uint: (values uint32 [X, n], padding_is_zero)."""
    packed_XxB = np.asarray(packed_XxB, np.uint8)
    x = packed_XxB.shape[0]
    nbytes = packed_bytes(n, width)
    if packed_XxB.shape[1] != nbytes:
        raise ValueError(f"expected {nbytes} bytes per row, got {packed_XxB.shape[1]}")
    if width == 0 or n == 0:
        return np.zeros((x, n), np.uint32), True
    group = _group(width)
    if group is None:
        bits = np.unpackbits(packed_XxB, axis=1, bitorder="little")
        pad_ok = not bits[:, n * width :].any()
        bits = bits[:, : n * width].reshape(x, n, width).astype(np.uint32)
        values = (bits << np.arange(width, dtype=np.uint32)).sum(axis=-1, dtype=np.uint32)
        return values, pad_ok
    per, gbytes = group
    wtype = np.uint32 if gbytes <= 4 else np.uint64
    ngroups = -(-n // per)
    if ngroups * gbytes == nbytes:
        full = packed_XxB.reshape(x, ngroups, gbytes)
    else:
        full = np.zeros((x, ngroups * gbytes), np.uint8)
        full[:, :nbytes] = packed_XxB
        full = full.reshape(x, ngroups, gbytes)
    word = np.zeros((x, ngroups), wtype)
    for b in range(gbytes):
        word |= full[:, :, b].astype(wtype) << wtype(8 * b)
    mask = wtype((1 << width) - 1)
    values = np.empty((x, ngroups, per), np.uint32)
    for i in range(per):
        values[:, :, i] = (word >> wtype(i * width)) & mask
    values = values.reshape(x, ngroups * per)
    pad_ok = not values[:, n:].any()
    if pad_ok and (n * width) % 8:  # stray bits in the last byte beyond the final value
        used = (n * width) % 8
        pad_ok = not (packed_XxB[:, -1] >> np.uint8(used)).any()
    return values[:, :n], bool(pad_ok)
