"""Byte layout of one tensor's arrays on the wire, derived from the parameter table alone.

Both the encoder and the decoder compute this from `ExpectedTensor` + index coding, so the
decoder never sizes anything from a peer's header; it only checks the header agrees.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from templar_jax.wire.bitpack import packed_bytes
from templar_jax.wire.elias_fano import ef_params
from templar_jax.wire.expected import ExpectedTable, ExpectedTensor

MAGIC = b"TJXW"
VERSION = 1
# magic, format version, flags (must be 0), header length in bytes
PREFIX = struct.Struct("<4sHHI")

INDEX_CODINGS = ("elias-fano", "twelve-bit")
CODE_BITS = 2
TWELVE_BIT_MAX_CHUNK = 4096

# Header size bound: a fixed allowance (meta, framing) plus a per-tensor allowance.
HEADER_BASE_BYTES = 16384
HEADER_BYTES_PER_TENSOR = 1024
ARRAY_ORDER = ("shift", "scale", "lut", "idx", "codes")


class ArraySpec(NamedTuple):
    dtype: str  # numpy dtype string, little-endian
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 4 if self.dtype == "<f4" else 1
        for s in self.shape:
            n *= s
        return n


class TensorLayout(NamedTuple):
    batch_shape: tuple[int, ...]
    num_chunks: int
    chunk_size: int
    k: int
    idx_coding: str  # "elias-fano" | "twelve-bit" | "implicit"
    arrays: dict[str, ArraySpec]  # in ARRAY_ORDER

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    @property
    def rows(self) -> int:
        n = self.num_chunks
        for s in self.batch_shape:
            n *= s
        return n


def idx_coding_for(index_coding: str, chunk_size: int, k: int) -> str:
    if index_coding not in INDEX_CODINGS:
        raise ValueError(f"unknown index coding {index_coding!r}; use one of {INDEX_CODINGS}")
    if index_coding == "elias-fano" and k == chunk_size:
        return "implicit"
    return index_coding


def idx_row_bytes(idx_coding: str, chunk_size: int, k: int) -> int:
    if idx_coding == "implicit":
        return 0
    if idx_coding == "twelve-bit":
        return packed_bytes(k, 12)
    return ef_params(chunk_size, k).row_bytes


def tensor_layout(et: ExpectedTensor, index_coding: str, *, chunk: int = 64, topk: int = 64) -> TensorLayout:
    geo = et.geometry(chunk=chunk, topk=topk)
    coding = idx_coding_for(index_coding, geo.chunk_size, geo.k)
    if coding == "twelve-bit" and geo.chunk_size > TWELVE_BIT_MAX_CHUNK:
        raise ValueError(f"twelve-bit indices need chunks <= {TWELVE_BIT_MAX_CHUNK}, got {geo.chunk_size}")
    batch = et.batch_shape
    rows = et.batch_size * geo.num_chunks
    arrays = {
        "shift": ArraySpec("<f4", batch),
        "scale": ArraySpec("<f4", batch),
        "lut": ArraySpec("<f4", batch + (4,)),
        "idx": ArraySpec("u1", (rows, idx_row_bytes(coding, geo.chunk_size, geo.k))),
        "codes": ArraySpec("u1", (rows, packed_bytes(geo.k, CODE_BITS))),
    }
    return TensorLayout(batch, geo.num_chunks, geo.chunk_size, geo.k, coding, arrays)


def header_bound(expected: ExpectedTable) -> int:
    return HEADER_BASE_BYTES + HEADER_BYTES_PER_TENSOR * len(expected)


def max_payload_bytes(expected: ExpectedTable, *, chunk: int = 64, topk: int = 64) -> int:
    """Upper bound on any valid payload's size for this table (any index coding).

    Storage uses it as the download cap; the decoder rejects anything larger before parsing.
    """
    data = 0
    for et in expected.values():
        data += max(tensor_layout(et, c, chunk=chunk, topk=topk).nbytes for c in INDEX_CODINGS)
    return PREFIX.size + header_bound(expected) + data
