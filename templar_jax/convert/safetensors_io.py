"""Streaming safetensors writer and a validating, memory-mapped reader.

Why our own: the `safetensors` package writes a whole dict of tensors at once,
which for a 72B export means holding every converted tensor in memory. The
format is simple (8-byte little-endian header length, a JSON header of
{name: {dtype, shape, data_offsets}}, then the raw bytes, contiguous), so once
the plan (names, shapes, dtypes) is known the header can be written first and
each tensor appended as soon as it is converted. The output is byte-compatible
with `safetensors`/`transformers` (sharded with `model.safetensors.index.json`
when the plan exceeds `max_shard_bytes`).

The reader checks before it trusts (files come from strangers on the internet):
header length bound, JSON shape, known dtypes, offsets that are in range,
contiguous and match shape x itemsize.
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Iterable, Optional

import ml_dtypes
import numpy as np

from templar_jax.convert.mapping import ConversionError

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024

_CODES = {
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F16": np.dtype(np.float16),
    "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
_NAMES = {v: k for k, v in _CODES.items()}


class SafetensorsError(ConversionError):
    """A safetensors file or index is malformed, truncated or inconsistent."""


def dtype_code(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype not in _NAMES:
        raise SafetensorsError(f"dtype {dtype} has no safetensors code")
    return _NAMES[dtype]


Entry = tuple[str, tuple[int, ...], np.dtype]


def _nbytes(entry: Entry) -> int:
    _, shape, dtype = entry
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def plan_shards(entries: list[Entry], max_shard_bytes: int) -> list[list[Entry]]:
    """Greedy, order-keeping split into shards of at most `max_shard_bytes` (a bigger tensor gets its own)."""
    shards: list[list[Entry]] = [[]]
    size = 0
    for entry in entries:
        n = _nbytes(entry)
        if shards[-1] and size + n > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += n
    return shards


def _header_bytes(entries: list[Entry], metadata: dict[str, str]) -> bytes:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name, shape, dtype in entries:
        n = _nbytes((name, shape, dtype))
        header[name] = {"dtype": dtype_code(dtype), "shape": list(shape),
                        "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors itself does
    return struct.pack("<Q", len(raw)) + raw


class StreamingSafetensorsWriter:
    """Write a planned set of tensors, one at a time, in plan order.

    >>> w = StreamingSafetensorsWriter(out, [("a", (2, 3), np.float32)], max_shard_bytes=5 << 30)
    >>> w.write("a", np.zeros((2, 3), np.float32)); files = w.close()
    """

    def __init__(self, out_dir: str | Path, entries: Iterable[Entry], *, max_shard_bytes: int,
                 metadata: Optional[dict[str, str]] = None):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        entries = [(n, tuple(int(d) for d in s), np.dtype(t)) for n, s, t in entries]
        if len({e[0] for e in entries}) != len(entries):
            raise SafetensorsError("duplicate tensor names in the export plan")
        if max_shard_bytes <= 0:
            raise SafetensorsError(f"max_shard_bytes must be positive, got {max_shard_bytes}")
        self._metadata = {"format": "pt", **(metadata or {})}
        self._shards = plan_shards(entries, max_shard_bytes)
        n = len(self._shards)
        self.files = ([SINGLE_FILE] if n == 1 else
                      [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)])
        self._queue = [(i, e) for i, shard in enumerate(self._shards) for e in shard]
        self._pos = 0
        self._handle = None
        self._open_shard = -1
        self.total_bytes = sum(_nbytes(e) for e in entries)

    def write(self, name: str, array: np.ndarray) -> None:
        if self._pos >= len(self._queue):
            raise SafetensorsError(f"unexpected tensor {name!r}: every planned tensor is written")
        shard, (want, shape, dtype) = self._queue[self._pos]
        if name != want:
            raise SafetensorsError(f"tensor {name!r} written out of order; expected {want!r}")
        array = np.asarray(array)
        if array.shape != shape or array.dtype != dtype:
            raise SafetensorsError(
                f"{name}: got {array.dtype}{list(array.shape)}, planned {dtype}{list(shape)}")
        if shard != self._open_shard:
            self._close_handle()
            self._handle = open(self.out_dir / self.files[shard], "wb")
            self._handle.write(_header_bytes(self._shards[shard], self._metadata))
            self._open_shard = shard
        little = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        self._handle.write(little.reshape(-1).view(np.uint8).data)  # no bytes() copy
        self._pos += 1

    def close(self) -> list[str]:
        """Finish; writes the index when sharded. Returns the file names written."""
        self._close_handle()
        if self._pos != len(self._queue):
            missing = [e[0] for _, e in self._queue[self._pos:self._pos + 3]]
            raise SafetensorsError(f"export incomplete: {len(self._queue) - self._pos} tensors "
                                   f"not written (next: {missing})")
        if len(self.files) > 1:
            index = {
                "metadata": {"total_size": self.total_bytes},
                "weight_map": {e[0]: self.files[s] for s, e in self._queue},
            }
            (self.out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2))
            return self.files + [INDEX_FILE]
        return list(self.files)

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class SafetensorsFile:
    """One memory-mapped safetensors file; `get` returns a read-only view (no copy)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            self._mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) \
                if self.path.stat().st_size else b""
        size = len(self._mmap)
        if size < 8:
            raise SafetensorsError(f"{self.path.name}: {size} bytes is too short for a header")
        (hlen,) = struct.unpack("<Q", self._mmap[:8])
        if hlen > MAX_HEADER_BYTES or 8 + hlen > size:
            raise SafetensorsError(f"{self.path.name}: header length {hlen} out of bounds")
        try:
            header = json.loads(bytes(self._mmap[8:8 + hlen]))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SafetensorsError(f"{self.path.name}: header is not JSON ({err})") from err
        if not isinstance(header, dict):
            raise SafetensorsError(f"{self.path.name}: header is not a JSON object")
        self.metadata = header.pop("__metadata__", None) or {}
        self._base = 8 + hlen
        self._tensors = {name: self._check(name, info, size - self._base)
                         for name, info in header.items()}
        spans = sorted((off, off + n) for _, _, off, n in self._tensors.values())
        cursor = 0
        for start, end in spans:
            if start != cursor:
                raise SafetensorsError(f"{self.path.name}: tensor data not contiguous at {start}")
            cursor = end
        if cursor != size - self._base:
            raise SafetensorsError(f"{self.path.name}: {size - self._base - cursor} trailing bytes")

    def _check(self, name, info, data_len):
        try:
            dtype = _CODES[info["dtype"]]
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise SafetensorsError(f"{self.path.name}: bad header entry {name!r}: {err!r}") from err
        numel = int(np.prod(shape, dtype=np.int64))
        if any(d < 0 for d in shape) or not 0 <= start <= end <= data_len \
                or end - start != numel * dtype.itemsize:
            raise SafetensorsError(f"{self.path.name}: {name!r} offsets/shape inconsistent")
        return dtype, shape, start, end - start

    def names(self) -> list[str]:
        return list(self._tensors)

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def info(self, name: str) -> tuple[np.dtype, tuple[int, ...]]:
        dtype, shape, _, _ = self._tensors[name]
        return dtype, shape

    def get(self, name: str) -> np.ndarray:
        if name not in self._tensors:
            raise SafetensorsError(f"{self.path.name}: no tensor {name!r}")
        dtype, shape, start, n = self._tensors[name]
        count = n // dtype.itemsize
        return np.frombuffer(self._mmap, dtype=dtype.newbyteorder("<"), count=count,
                             offset=self._base + start).reshape(shape)


class HFWeights:
    """All tensors of an HF checkpoint directory (single file or sharded with an index)."""

    def __init__(self, hf_dir: str | Path):
        self.dir = Path(hf_dir)
        index = self.dir / INDEX_FILE
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                files = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                raise SafetensorsError(f"{index}: malformed index ({err!r})") from err
            for name in files:
                if Path(name).name != name:
                    raise SafetensorsError(f"{index}: shard name {name!r} leaves the directory")
        elif (self.dir / SINGLE_FILE).is_file():
            files = [SINGLE_FILE]
        else:
            raise SafetensorsError(f"{self.dir}: no {SINGLE_FILE} or {INDEX_FILE}")
        self._files = {name: SafetensorsFile(self.dir / name) for name in files}
        self._where: dict[str, SafetensorsFile] = {}
        for f in self._files.values():
            for name in f.names():
                self._where[name] = f

    def names(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def get(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise SafetensorsError(f"{self.dir}: checkpoint has no tensor {name!r}")
        return self._where[name].get(name)
