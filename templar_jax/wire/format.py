"""encode/decode of a whole peer payload: prefix, length-bounded JSON header, raw arrays.

Layout (all little-endian):
  PREFIX  magic b"TJXW", u16 version, u16 flags (0), u32 header length
  HEADER  UTF-8 JSON: {"format_version", "index_coding", "meta", "tensors": {name: {
            "shape", "batch_shape", "num_chunks", "chunk_size", "k", "idx_coding",
            "arrays": {array: {"dtype", "shape", "offset", "length"}}}}, "data_bytes"}
  DATA    the arrays back to back, in header tensor order and ARRAY_ORDER, offsets relative
          to the start of DATA (safetensors style).
Arrays: shift/scale f32 [*batch], lut f32 [*batch, 4], idx uint8 [rows, row_bytes] (Elias-Fano,
12-bit pairs, or empty when every index is sent), codes uint8 [rows, ceil(k/4)] (2 bits each).

The decoder trusts nothing from the peer: sizes come from the caller's parameter table; the
header must agree with them field by field; every index and side value is checked.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import numpy as np

from templar_jax.sparseloco.payload import Payload, TensorPayload
from templar_jax.wire.bitpack import pack_uint, unpack_uint
from templar_jax.wire.codes_fast import unpack_codes
from templar_jax.wire.elias_fano import EFDecodeError, check_sorted_in_range, ef_encode, ef_params
from templar_jax.wire.elias_fano_fast import ef_decode_fast
from templar_jax.wire.errors import PayloadError
from templar_jax.wire.expected import ExpectedTable, ExpectedTensor, expected_table
from templar_jax.wire.layout import (
    ARRAY_ORDER,
    CODE_BITS,
    MAGIC,
    PREFIX,
    VERSION,
    TensorLayout,
    header_bound,
    max_payload_bytes,
    tensor_layout,
)
from templar_jax.wire.meta import check_expected_meta, check_meta


# ----------------------------------------------------------------------------- encode


def _encode_idx(idx_XxK: np.ndarray, lay: TensorLayout) -> np.ndarray:
    if lay.idx_coding == "implicit":
        return np.zeros((lay.rows, 0), np.uint8)
    if lay.idx_coding == "twelve-bit":
        return pack_uint(idx_XxK, 12)
    return ef_encode(idx_XxK, ef_params(lay.chunk_size, lay.k))


def _header_entry(name: str, et: ExpectedTensor, lay: TensorLayout, offset: int) -> tuple[dict, int]:
    arrays = {}
    for array_name in ARRAY_ORDER:
        spec = lay.arrays[array_name]
        arrays[array_name] = {"dtype": spec.dtype, "shape": list(spec.shape), "offset": offset, "length": spec.nbytes}
        offset += spec.nbytes
    entry = {
        "shape": list(et.shape),
        "batch_shape": list(lay.batch_shape),
        "num_chunks": lay.num_chunks,
        "chunk_size": lay.chunk_size,
        "k": lay.k,
        "idx_coding": lay.idx_coding,
        "arrays": arrays,
    }
    return entry, offset


def _tensor_arrays(name: str, tp: TensorPayload, lay: TensorLayout) -> dict[str, np.ndarray]:
    """Validate our own compressor's output (ValueError: a bug here, not a peer's fault)."""
    idx = np.asarray(tp.idx)
    codes = np.asarray(tp.codes)
    want = lay.batch_shape + (lay.num_chunks, lay.k)
    if idx.shape != want or codes.shape != want:
        raise ValueError(f"{name}: idx {idx.shape} / codes {codes.shape}, expected {want}")
    idx_XxK = idx.reshape(lay.rows, lay.k).astype(np.int64)
    try:
        check_sorted_in_range(idx_XxK, lay.chunk_size)
    except EFDecodeError as e:
        raise ValueError(f"{name}: {e}") from None
    codes_XxK = codes.reshape(lay.rows, lay.k)
    if codes_XxK.size and int(codes_XxK.max()) > 3:
        raise ValueError(f"{name}: code {int(codes_XxK.max())} out of range 0..3")
    side = {}
    for array_name in ("shift", "scale", "lut"):
        value = np.asarray(getattr(tp, array_name), np.float32)
        if value.shape != lay.arrays[array_name].shape:
            raise ValueError(f"{name}: {array_name} shape {value.shape}, expected {lay.arrays[array_name].shape}")
        if not np.isfinite(value).all():  # every decoder would reject it; fail here, loudly
            raise ValueError(f"{name}: non-finite {array_name}")
        side[array_name] = value.astype("<f4")
    return {
        **side,
        "idx": _encode_idx(idx_XxK, lay),
        "codes": pack_uint(codes_XxK.astype(np.uint8), CODE_BITS),
    }


def build_header(
    table: ExpectedTable, names: list[str], meta: Mapping[str, Any], index_coding: str, *, chunk: int = 64,
    topk: int = 64,
) -> tuple[bytes, dict[str, TensorLayout]]:
    """Header bytes and per-tensor layouts for these tensors; needs no arrays, so sizes can be
    computed exactly without building a payload (see wire.sizes)."""
    meta = check_meta(meta, error=ValueError)
    tensors: dict[str, dict] = {}
    layouts: dict[str, TensorLayout] = {}
    offset = 0
    for name in names:
        if name not in table:
            raise ValueError(f"{name}: not in the parameter table")
        layouts[name] = tensor_layout(table[name], index_coding, chunk=chunk, topk=topk)
        tensors[name], offset = _header_entry(name, table[name], layouts[name], offset)
    header = {"format_version": VERSION, "index_coding": index_coding, "meta": meta, "tensors": tensors,
              "data_bytes": offset}
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode(), layouts


def encode(
    payload: Payload,
    meta: Mapping[str, Any],
    *,
    expected: Mapping[str, Any],
    index_coding: str = "elias-fano",
    chunk: int = 64,
    topk: int = 64,
) -> bytes:
    """Serialize a peer payload. `expected` is the parameter table (or params / {name: shape}):
    the chunk size, which the index code needs, is not recoverable from the arrays alone."""
    table = expected_table(expected)
    header_bytes, layouts = build_header(table, list(payload), meta, index_coding, chunk=chunk, topk=topk)
    blobs: list[bytes] = []
    for name, tp in payload.items():
        arrays = _tensor_arrays(name, tp, layouts[name])
        blobs.extend(arrays[a].tobytes() for a in ARRAY_ORDER)
    return b"".join([PREFIX.pack(MAGIC, VERSION, 0, len(header_bytes)), header_bytes, *blobs])


# ----------------------------------------------------------------------------- decode


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = {}
    for key, value in pairs:
        if key in out:
            raise PayloadError(f"header has duplicate key {key[:80]!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise PayloadError(f"header contains non-standard JSON constant {name}")


def _parse_header(raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except PayloadError:
        raise
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise PayloadError(f"malformed header: {type(e).__name__}") from None
    if not isinstance(header, dict):
        raise PayloadError("header is not a JSON object")
    return header


def _check_entry(name: str, entry: Any, et: ExpectedTensor, lay: TensorLayout, offset: int) -> int:
    """Header entry must equal what the table implies; returns the next data offset."""
    if not isinstance(entry, dict):
        raise PayloadError(f"{name}: header entry is not an object")
    expected_entry, next_offset = _header_entry(name, et, lay, offset)
    for field, want in expected_entry.items():
        if field == "arrays":
            continue
        got = entry.get(field)
        if got != want or type(got) is not type(want):
            raise PayloadError(f"{name}: {field} is {str(got)[:80]}, expected {want}")
    arrays = entry.get("arrays")
    if not isinstance(arrays, dict) or list(arrays) != list(ARRAY_ORDER):
        raise PayloadError(f"{name}: arrays must be exactly {list(ARRAY_ORDER)} in that order")
    for array_name, want in expected_entry["arrays"].items():
        got = arrays[array_name]
        if not isinstance(got, dict) or set(got) != set(want):
            raise PayloadError(f"{name}: {array_name} descriptor malformed")
        for field in ("dtype", "shape", "offset", "length"):
            if got[field] != want[field] or type(got[field]) is not type(want[field]):
                raise PayloadError(f"{name}: {array_name} {field} is {str(got[field])[:80]}, expected {want[field]}")
    if len(entry) != len(expected_entry):
        raise PayloadError(f"{name}: header entry has unexpected fields")
    return next_offset


def _view(data: memoryview, spec_offset: int, lay: TensorLayout, array_name: str) -> np.ndarray:
    spec = lay.arrays[array_name]
    return np.frombuffer(data, dtype=spec.dtype, count=spec.nbytes // np.dtype(spec.dtype).itemsize,
                         offset=spec_offset).reshape(spec.shape)


# The aggregation squares and sums each reference tensor's decoded values (the clip norm) in
# float32, in whatever order its backend reduces: n * max|v|^2 under half of float32's largest
# value keeps that sum finite whatever the order, with room for rounding.
NORM_SQ_BOUND = float(np.finfo(np.float32).max) / 2


def check_decoded_range(name: str, shift: np.ndarray, lut: np.ndarray, n_values: int) -> None:
    """Every value this tensor can decode to, `lut[code] + shift` in float32 exactly as
    `codec.dequantize` computes it, must be finite, and so must the sum of `n_values` of their
    squares: side values that are each finite can still decode to inf (or an infinite norm),
    which would poison the aggregation for every peer."""
    with np.errstate(over="ignore"):  # an overflow is what this looks for
        values = lut + shift[..., None]  # float32 + float32: the decoder's own rounding
    if not np.isfinite(values).all():
        raise PayloadError(f"{name}: lut + shift overflows float32 (decoded values are not finite)")
    peak = float(np.max(np.abs(values.astype(np.float64)), initial=0.0))
    if n_values * peak * peak > NORM_SQ_BOUND:
        raise PayloadError(f"{name}: decoded value {peak:.3g} overflows the norm of {n_values} values")


def _output_buffers(layouts: Mapping[str, TensorLayout], names: Collection[str]) -> dict[str, dict[str, np.ndarray]]:
    """Per tensor, [rows, k] views of one int32 allocation for every Elias-Fano index and one
    uint8 allocation for every code. One large allocation is faulted in as a few huge pages;
    one per tensor can go back to the OS after each payload and be faulted back 4 KB at a time
    (a 72B layer's 67 MB: ~6 vs ~15 ms to allocate and first touch; bench/wire.py's decode 19 vs
    28 ms CPU). The views keep their allocation alive until every tensor of the payload is dropped."""
    shapes = {n: (layouts[n].rows, layouts[n].k) for n in names}
    coded = [n for n in names if layouts[n].idx_coding == "elias-fano"]
    idx_all = np.empty(sum(r * k for r, k in (shapes[n] for n in coded)), np.int32)
    codes_all = np.empty(sum(r * k for r, k in shapes.values()), np.uint8)
    views: dict[str, dict[str, np.ndarray]] = {n: {} for n in names}
    at = 0
    for n in coded:
        size = shapes[n][0] * shapes[n][1]
        views[n]["idx"], at = idx_all[at : at + size].reshape(shapes[n]), at + size
    at = 0
    for n in names:
        size = shapes[n][0] * shapes[n][1]
        views[n]["codes"], at = codes_all[at : at + size].reshape(shapes[n]), at + size
    return views


def _decode_tensor(name: str, data: memoryview, entry: dict, lay: TensorLayout,
                   pool: Executor | None = None, out: Mapping[str, np.ndarray] | None = None) -> TensorPayload:
    arrays = {a: _view(data, entry["arrays"][a]["offset"], lay, a) for a in ARRAY_ORDER}
    out = out or {}
    side = {}
    for array_name in ("shift", "scale", "lut"):
        value = arrays[array_name].astype(np.float32)
        if not np.isfinite(value).all():
            raise PayloadError(f"{name}: non-finite {array_name}")
        side[array_name] = value
    check_decoded_range(name, side["shift"], side["lut"], lay.num_chunks * lay.k)
    try:
        if lay.idx_coding == "implicit":
            idx = np.broadcast_to(np.arange(lay.k, dtype=np.int32), (lay.rows, lay.k)).copy()
        elif lay.idx_coding == "twelve-bit":
            idx64, pad_ok = unpack_uint(arrays["idx"], lay.k, 12)
            if not pad_ok:
                raise EFDecodeError("nonzero padding bits in twelve-bit indices")
            check_sorted_in_range(idx64.astype(np.int64), lay.chunk_size)
            idx = idx64.astype(np.int32)
        else:
            idx = ef_decode_fast(arrays["idx"], ef_params(lay.chunk_size, lay.k), pool, out=out.get("idx"))
    except EFDecodeError as e:
        raise PayloadError(f"{name}: {e}") from None
    codes, pad_ok = unpack_codes(arrays["codes"], lay.k, pool, out=out.get("codes"))
    if not pad_ok:
        raise PayloadError(f"{name}: nonzero padding bits in codes")
    shape = lay.batch_shape + (lay.num_chunks, lay.k)
    return TensorPayload(idx.reshape(shape), codes.reshape(shape), side["shift"], side["scale"],
                         side["lut"])


def decode(
    data: bytes | bytearray | memoryview,
    expected: Mapping[str, Any],
    *,
    batch_dims: Mapping[str, int] | None = None,
    chunk: int = 64,
    topk: int = 64,
    require_all: bool = True,
    expected_meta: Mapping[str, Any] | None = None,
    workers: int = 1,
    names: Collection[str] | None = None,
) -> tuple[Payload, dict[str, Any]]:
    """Parse and fully validate a peer payload against the parameter table.

    `expected`: flat name -> ExpectedTensor, or name -> shape (batch dims from `batch_dims` or the
    `layers/` rule), or a params tree. Raises PayloadError (only) for any bad input.
    `workers` > 1 decodes the index and code arrays on that many threads (same result).
    `names`: decode only these tensors (each must be in the payload); the prefix, header and
    sizes are still checked in full, but the other tensors' arrays are not read, so use it on
    bytes a full decode already accepted (a validator re-reading one tensor at a time).
    """
    if type(workers) is not int or workers < 1:
        raise ValueError(f"workers must be an int >= 1, got {workers!r}")
    table: ExpectedTable = expected_table(expected, batch_dims=batch_dims)
    buf = memoryview(data).cast("B")
    bound = max_payload_bytes(table, chunk=chunk, topk=topk)
    if len(buf) > bound:
        raise PayloadError(f"payload of {len(buf)} bytes exceeds bound {bound} for this model")
    if len(buf) < PREFIX.size:
        raise PayloadError(f"truncated: {len(buf)} bytes, shorter than the {PREFIX.size}-byte prefix")
    magic, version, flags, header_len = PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise PayloadError(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise PayloadError(f"unsupported format version {version}")
    if flags != 0:
        raise PayloadError(f"unknown flags {flags:#x}")
    if header_len > header_bound(table):
        raise PayloadError(f"header of {header_len} bytes exceeds bound {header_bound(table)}")
    data_start = PREFIX.size + header_len
    if data_start > len(buf):
        raise PayloadError("truncated inside the header")
    header = _parse_header(bytes(buf[PREFIX.size : data_start]))
    if header.get("format_version") != VERSION:
        raise PayloadError(f"header format_version {str(header.get('format_version'))[:40]} != {VERSION}")
    coding = header.get("index_coding")
    if coding not in ("elias-fano", "twelve-bit"):
        raise PayloadError(f"unknown index coding {str(coding)[:40]}")
    meta = check_meta(header.get("meta"))
    check_expected_meta(meta, expected_meta)
    tensors = header.get("tensors")
    if not isinstance(tensors, dict):
        raise PayloadError("header tensors is not an object")
    if set(header) != {"format_version", "index_coding", "meta", "tensors", "data_bytes"}:
        raise PayloadError("header has unexpected or missing top-level fields")
    layouts: dict[str, TensorLayout] = {}
    offset = 0
    for name, entry in tensors.items():
        if name not in table:
            raise PayloadError(f"unknown tensor {name[:120]!r}")
        try:
            layouts[name] = tensor_layout(table[name], coding, chunk=chunk, topk=topk)
        except ValueError as e:
            raise PayloadError(f"{name}: {e}") from None
        offset = _check_entry(name, entry, table[name], layouts[name], offset)
    if require_all:
        missing = [n for n in table if n not in tensors]
        if missing:
            raise PayloadError(f"missing tensor {missing[0]!r} ({len(missing)} missing)")
    if header.get("data_bytes") != offset or type(header.get("data_bytes")) is not int:
        raise PayloadError(f"data_bytes {str(header.get('data_bytes'))[:40]} != {offset}")
    body = buf[data_start:]
    if len(body) < offset:
        raise PayloadError(f"truncated: {len(body)} data bytes, header declares {offset}")
    if len(body) > offset:
        raise PayloadError(f"{len(body) - offset} trailing bytes after the data")
    if names is not None:
        unknown = [n for n in names if n not in tensors]
        if unknown:
            raise PayloadError(f"no tensor {unknown[0][:120]!r} in the payload")
    wanted = None if names is None else set(names)
    chosen = tensors if wanted is None else [n for n in tensors if n in wanted]
    out = _output_buffers(layouts, chosen)
    with ThreadPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        payload = {name: _decode_tensor(name, body, tensors[name], layouts[name], pool, out[name]) for name in chosen}
    return payload, meta
