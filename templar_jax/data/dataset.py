"""`ShardDataset`: one flat, indexable view over the samples of one or more shards.

Global sample index `g` runs over shards in ascending shard order; sample ids and samplers
(`sampler.py`) use the same numbering, so a miner and a validator holding the same shard set
agree on what "sample g" is. Shards are memory-mapped and opened lazily; a remote dataset
(`from_source`) downloads a shard on first use and prefetches the next one in the background.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from templar_jax.data.errors import DataError
from templar_jax.data.format import SAMPLE_ID_DTYPE, compute_sample_ids, load_array, load_shard, sample_ids_name, train_name
from templar_jax.data.manifest import check_file, read_manifest
from templar_jax.data.remote import ShardCache, ShardSource

_TRAIN_RE = re.compile(r"^train_(\d{6})\.npy$")
# Opens shard i -> (samples uint32 [N, L], ids uint64 [N]).
ShardOpener = Callable[[int], tuple[np.ndarray, np.ndarray]]


class ShardDataset:
    """Samples of a shard set. `samples(indices)` returns uint32 [n, seq_len].

    Args:
      dir_or_files: a shard folder (with or without `manifest.json`) or a list of
        `train_{i:06d}.npy` paths (their `sample_ids_{i:06d}.npy` sit next to them).
      seq_len: tokens per sample; must match the manifest when there is one.
      verify_hash: also check every file's sha256 against the manifest on open (sizes are
        always checked when a manifest exists).
      check_ids: recompute each returned sample's id and compare with the stored id, so a
        corrupted sample is a `DataError`, never a silently wrong training batch.
    """

    def __init__(self, dir_or_files: str | Path | Sequence[str | Path], seq_len: int, *,
                 verify_hash: bool = False, check_ids: bool = True):
        if isinstance(dir_or_files, (str, Path)) and Path(dir_or_files).is_dir():
            folder = Path(dir_or_files)
            manifest = read_manifest(folder)
            if manifest is not None:
                if manifest.seq_len != seq_len:
                    raise DataError(f"{folder}: manifest seq_len {manifest.seq_len} != requested {seq_len}")
                for name, entry in manifest.files.items():
                    check_file(folder / name, entry, verify_hash=verify_hash)
                indices = [i for i, _ in manifest.shards]
                counts = [n for _, n in manifest.shards]
                folders = {i: folder for i in indices}
            else:
                found = sorted(p for p in folder.iterdir() if _TRAIN_RE.match(p.name))
                if not found:
                    raise DataError(f"{folder}: no train_*.npy shards")
                indices, folders, counts = self._from_paths(found, seq_len)
        else:
            paths = [Path(dir_or_files)] if isinstance(dir_or_files, (str, Path)) else [Path(p) for p in dir_or_files]
            if not paths:
                raise DataError("no shard files given")
            indices, folders, counts = self._from_paths(paths, seq_len)

        def open_local(i: int) -> tuple[np.ndarray, np.ndarray]:
            return load_shard(folders[i] / train_name(i), folders[i] / sample_ids_name(i), seq_len)

        self._setup(seq_len, indices, counts, open_local, check_ids=check_ids)

    @staticmethod
    def _from_paths(paths: list[Path], seq_len: int):
        indices, folders, counts = [], {}, []
        for p in paths:
            m = _TRAIN_RE.match(p.name)
            if not m:
                raise DataError(f"{p}: not a train_{{i:06d}}.npy shard file")
            i = int(m.group(1))
            if i in folders:
                raise DataError(f"shard {i} given twice ({folders[i]} and {p.parent})")
            folders[i] = p.parent
            indices.append(i)
        order = sorted(range(len(indices)), key=indices.__getitem__)
        indices = [indices[k] for k in order]
        for i in indices:
            _, ids = load_shard(folders[i] / train_name(i), folders[i] / sample_ids_name(i), seq_len)
            counts.append(int(ids.size))
        return indices, folders, counts

    @classmethod
    def from_source(cls, source: ShardSource, prefix: str, cache_dir: str | Path, seq_len: int, *,
                    prefetch: bool = True, check_ids: bool = True) -> "ShardDataset":
        """A dataset whose shards live in a bucket under `prefix` (see `remote.ShardCache`).

        The manifest and every (small) sample-id file are fetched now, so `n_samples` and
        `sample_ids` are known at once; token shards are downloaded on first use, and touching
        shard k starts a background download of shard k+1 when `prefetch` is set.
        """
        cache = ShardCache(source, prefix, cache_dir)
        manifest = cache.manifest()
        if manifest.seq_len != seq_len:
            raise DataError(f"{cache.key('manifest.json')}: seq_len {manifest.seq_len} != requested {seq_len}")
        indices = [i for i, _ in manifest.shards]
        for i in indices:
            cache.fetch(sample_ids_name(i))
        following = dict(zip(indices, indices[1:]))

        def open_remote(i: int) -> tuple[np.ndarray, np.ndarray]:
            path = cache.fetch(train_name(i))
            if prefetch and i in following:
                cache.prefetch(train_name(following[i]))
            samples, ids = load_shard(path, cache.cache_dir / sample_ids_name(i), seq_len)
            if ids.size != dict(manifest.shards)[i]:
                raise DataError(f"shard {i}: {ids.size} samples, manifest says {dict(manifest.shards)[i]}")
            return samples, ids

        ds = cls.__new__(cls)
        ds._setup(seq_len, indices, [n for _, n in manifest.shards], open_remote, check_ids=check_ids)
        ds.cache = cache
        return ds

    def shard_view(self, position: int) -> "ShardDataset":
        """The samples of one shard (by `position` in ascending shard order) as a dataset of
        their own, numbered from 0. Views share this dataset's opened shards and cache, and
        there is one view per position."""
        if not 0 <= position < self.n_shards:
            raise DataError(f"shard position {position} out of range [0, {self.n_shards})")
        with self._lock:
            view = self._views.get(position)
            if view is None:
                count = int(self._offsets[position + 1] - self._offsets[position])
                view = ShardDataset.__new__(ShardDataset)
                view._setup(self.seq_len, [self.shard_indices[position]], [count],
                            lambda _i: self._shard(position), check_ids=self.check_ids)
                if self.cache is not None:
                    view.cache = self.cache
                self._views[position] = view
        return view

    def prefetch_shard(self, position: int) -> None:
        """Start downloading the shard at `position` in the background (remote sets only)."""
        if self.cache is not None:
            self.cache.prefetch(train_name(self.shard_indices[position]))

    def release_shard(self, position: int) -> None:
        """Forget the opened shard at `position` and, for a remote set, delete its cached token
        file (it is downloaded again if needed later)."""
        with self._lock:
            self._open.pop(position, None)
            view = self._views.get(position)
            if view is not None:
                view._open.clear()
        if self.cache is not None:
            self.cache.evict(train_name(self.shard_indices[position]))

    def _setup(self, seq_len: int, indices: list[int], counts: list[int], opener: ShardOpener, *,
               check_ids: bool) -> None:
        self.seq_len = seq_len
        self.shard_indices = tuple(indices)
        self._offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._opener = opener
        self._open: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        self._sample_ids: np.ndarray | None = None
        self._views: dict[int, ShardDataset] = {}
        self.check_ids = check_ids
        self.cache: ShardCache | None = None  # set for a remote set (`from_source`)

    @property
    def n_samples(self) -> int:
        return int(self._offsets[-1])

    @property
    def n_shards(self) -> int:
        return len(self.shard_indices)

    def __len__(self) -> int:
        return self.n_samples

    def _shard(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k-th shard (position, not file index), opened once."""
        with self._lock:
            if k not in self._open:
                samples, ids = self._opener(self.shard_indices[k])
                expected = int(self._offsets[k + 1] - self._offsets[k])
                if ids.size != expected:
                    raise DataError(f"shard {self.shard_indices[k]}: {ids.size} samples, expected {expected}")
                self._open[k] = (samples, ids)
            return self._open[k]

    @property
    def sample_ids(self) -> np.ndarray:
        """uint64 [n_samples]: the id of every sample, in global index order."""
        if self._sample_ids is None:
            parts = []
            for k, i in enumerate(self.shard_indices):
                if self.cache is not None:  # remote: ids are local already; tokens need not be
                    arr = load_array(self.cache.cache_dir / sample_ids_name(i), SAMPLE_ID_DTYPE)
                else:
                    arr = self._shard(k)[1]
                parts.append(np.asarray(arr))
            self._sample_ids = np.concatenate(parts)
        return self._sample_ids

    def _locate(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if indices.size and (indices.min() < 0 or indices.max() >= self.n_samples):
            bad = indices[(indices < 0) | (indices >= self.n_samples)][0]
            raise DataError(f"sample index {bad} out of range [0, {self.n_samples})")
        k = np.searchsorted(self._offsets, indices, side="right") - 1
        return k, indices - self._offsets[k]

    def samples(self, indices) -> np.ndarray:
        """uint32 [n, seq_len]: the samples at global `indices`, in the order given."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        out = np.empty((indices.size, self.seq_len), dtype=np.uint32)
        shard_pos, local = self._locate(indices)
        for k in np.unique(shard_pos):
            rows = np.nonzero(shard_pos == k)[0]
            samples, ids = self._shard(int(k))
            out[rows] = samples[local[rows]]
            if self.check_ids:
                got = compute_sample_ids(out[rows])
                bad = np.nonzero(got != ids[local[rows]])[0]
                if bad.size:
                    g = int(indices[rows[bad[0]]])
                    raise DataError(f"sample {g} (shard {self.shard_indices[k]}, row {int(local[rows[bad[0]]])}): "
                                    "content does not match its sample id (corrupted shard)")
        return out

    def ids(self, indices) -> np.ndarray:
        """uint64 [n]: sample ids at global `indices` (no token shard is read for remote sets)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._locate(indices)
        return self.sample_ids[indices]
