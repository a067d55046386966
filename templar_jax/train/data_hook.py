"""Batch iterators for `train`: the data hook is any Iterator of uint32 [B_local, L] arrays.

`shard_batches` draws random samples (seeded, with replacement across steps) from a
ShardDataset-like object (anything with `.n_samples` and `.samples(indices)`), and yields
this process's `rows` of each global batch, so every process agrees on the global batch.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def shard_batches(dataset, global_batch: int, seed: int = 0, rows: slice | None = None) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = rows or slice(0, global_batch)
    while True:
        indices = rng.integers(0, dataset.n_samples, size=global_batch)
        yield dataset.samples(indices[rows])
