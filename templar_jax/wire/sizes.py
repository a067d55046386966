"""Encoded sizes computed from shapes alone (exact, header included), and the reference's size.

Lets us report bits/param for a whole 72B payload without allocating one; tests check these
numbers against real encodes of real-shaped layers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from templar_jax.wire.expected import ExpectedTable, expected_table
from templar_jax.wire.format import build_header
from templar_jax.wire.layout import PREFIX

# Reference (SPEC 2.5): 12-bit packed indices (1.5 B each) + one byte per 2-bit code, plus per
# tensor shift, scale and a 4-entry lut as f32 (pickle/torch.save framing not counted).
REFERENCE_BYTES_PER_VALUE = 2.5
REFERENCE_SIDE_BYTES = 4 * 6


class SizeReport(NamedTuple):
    params: int
    chunks: int
    encoded_bytes: int
    reference_bytes: int

    @property
    def bits_per_param(self) -> float:
        return 8 * self.encoded_bytes / self.params

    @property
    def reference_bits_per_param(self) -> float:
        return 8 * self.reference_bytes / self.params

    @property
    def ratio_vs_reference(self) -> float:
        return self.encoded_bytes / self.reference_bytes


def encoded_size(
    table: ExpectedTable, meta: Mapping[str, Any] | None = None, *, index_coding: str = "elias-fano",
    chunk: int = 64, topk: int = 64,
) -> int:
    """Exact byte length `encode` produces for a full payload of this table and meta."""
    header, layouts = build_header(table, list(table), meta or {}, index_coding, chunk=chunk, topk=topk)
    return PREFIX.size + len(header) + sum(lay.nbytes for lay in layouts.values())


def reference_size(table: ExpectedTable, *, chunk: int = 64, topk: int = 64) -> int:
    total = 0
    for et in table.values():
        geo = et.geometry(chunk=chunk, topk=topk)
        values = geo.num_chunks * geo.k
        total += et.batch_size * (int(REFERENCE_BYTES_PER_VALUE * values + 0.5) + REFERENCE_SIDE_BYTES)
    return total


def size_report(
    table: ExpectedTable, meta: Mapping[str, Any] | None = None, *, index_coding: str = "elias-fano",
    chunk: int = 64, topk: int = 64,
) -> SizeReport:
    params = chunks = 0
    for et in table.values():
        n = 1
        for s in et.shape:
            n *= s
        params += n
        chunks += et.batch_size * et.geometry(chunk=chunk, topk=topk).num_chunks
    return SizeReport(params, chunks, encoded_size(table, meta, index_coding=index_coding, chunk=chunk, topk=topk),
                      reference_size(table, chunk=chunk, topk=topk))


def covenant_72b_table(*, n_layers: int = 80, tied: bool = True) -> ExpectedTable:
    """Parameter table of Covenant-72B (SPEC sec. 7) in this project's layout."""
    d, f, kv, v, L = 8192, 28672, 1024, 262144, n_layers
    shapes: dict[str, Any] = {
        "embed/embedding": (v, d),
        "layers/attn_norm/scale": (L, d),
        "layers/attn/wq": (L, d, d),
        "layers/attn/wk": (L, d, kv),
        "layers/attn/wv": (L, d, kv),
        "layers/attn/wo": (L, d, d),
        "layers/mlp_norm/scale": (L, d),
        "layers/mlp/w_gate": (L, d, f),
        "layers/mlp/w_up": (L, d, f),
        "layers/mlp/w_down": (L, f, d),
        "final_norm/scale": (d,),
    }
    if not tied:
        shapes["lm_head/kernel"] = (d, v)
    return expected_table(shapes)
