"""The on-disk shard format (SPEC sec. 6), defined byte for byte.

A shard set is a folder holding, for shard `i`:
  `train_{i:06d}.npy`       uint32 [n_tokens]   token stream, n_tokens a multiple of seq_len;
                                                 sample `j` is tokens[j*seq_len:(j+1)*seq_len]
  `sample_ids_{i:06d}.npy`  uint64 [n_samples]  one id per sample (below)
plus `manifest.json` (see `manifest.py`) with sizes and sha256 of every file.

Sample id (the definition every peer must reproduce):
    id = int.from_bytes(blake2b(sample.astype("<u4").tobytes(), digest_size=8).digest(), "little")
i.e. BLAKE2b with an 8-byte digest over the sample's `seq_len` tokens encoded as little-endian
uint32, the digest read as a little-endian uint64. Ids name a sample's *content*, so the same
sequence has the same id in any shard set; validators use them in `sample_digest`.

Files are plain `.npy` (format 1.0, C order), always loaded with `allow_pickle=False`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from templar_jax.data.errors import DataError

TOKEN_DTYPE = np.dtype("<u4")
SAMPLE_ID_DTYPE = np.dtype("<u8")


def train_name(shard: int) -> str:
    return f"train_{shard:06d}.npy"


def sample_ids_name(shard: int) -> str:
    return f"sample_ids_{shard:06d}.npy"


def sample_id(sample_L: np.ndarray) -> int:
    """blake2b-64 of one sample's little-endian uint32 token bytes, as a little-endian uint64."""
    data = np.ascontiguousarray(sample_L, dtype=TOKEN_DTYPE).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def compute_sample_ids(samples_NxL: np.ndarray) -> np.ndarray:
    """Sample ids (uint64 [N]) of a batch of samples [N, seq_len]."""
    samples_NxL = np.ascontiguousarray(samples_NxL, dtype=TOKEN_DTYPE)
    out = np.empty(samples_NxL.shape[0], dtype=SAMPLE_ID_DTYPE)
    for i, row in enumerate(samples_NxL):
        out[i] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    return out


def write_shard(out_dir: str | Path, shard: int, tokens: np.ndarray, seq_len: int) -> tuple[Path, Path]:
    """Write one shard's token stream and its sample ids; returns (train_path, ids_path).

    Files are written to a temporary name and renamed, so a crash never leaves a half-written
    shard under its final name.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or tokens.size == 0 or tokens.size % seq_len:
        raise DataError(f"shard {shard}: token stream of shape {tokens.shape} is not a non-empty "
                        f"multiple of seq_len {seq_len}")
    if tokens.dtype.kind not in "ui" or (tokens.size and (tokens.min() < 0 or tokens.max() > 0xFFFFFFFF)):
        raise DataError(f"shard {shard}: tokens must be integers in uint32 range")
    tokens = tokens.astype(TOKEN_DTYPE, copy=False)
    ids = compute_sample_ids(tokens.reshape(-1, seq_len))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr in ((train_name(shard), tokens), (sample_ids_name(shard), ids)):
        final = out_dir / name
        tmp = out_dir / (name + ".tmp")
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, final)
        paths.append(final)
    return paths[0], paths[1]


def load_array(path: Path, dtype: np.dtype) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path.name}: file not found in {path.parent}") from None
    except (ValueError, OSError, EOFError) as e:
        # Truncated files fail here: numpy refuses to map past the end of the file.
        raise DataError(f"{path.name}: not a readable .npy file ({e})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 1:
        raise DataError(f"{path.name}: expected a 1-D array, got shape {getattr(arr, 'shape', None)}")
    if arr.dtype != dtype:
        raise DataError(f"{path.name}: dtype {arr.dtype}, expected {dtype}")
    return arr


def load_shard(train_path: str | Path, ids_path: str | Path, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Memory-map one shard; returns (samples uint32 [N, seq_len], sample_ids uint64 [N]).

    Checks dtype, shape and that the id count matches the sample count; content is checked
    per sample against the ids when samples are read (see `ShardDataset.samples`).
    """
    train_path, ids_path = Path(train_path), Path(ids_path)
    tokens = load_array(train_path, TOKEN_DTYPE)
    ids = load_array(ids_path, SAMPLE_ID_DTYPE)
    if tokens.size == 0 or tokens.size % seq_len:
        raise DataError(f"{train_path.name}: {tokens.size} tokens is not a non-empty multiple of "
                        f"seq_len {seq_len}")
    n = tokens.size // seq_len
    if ids.size != n:
        raise DataError(f"{ids_path.name}: {ids.size} sample ids for {n} samples in {train_path.name}")
    return tokens.reshape(n, seq_len), ids
