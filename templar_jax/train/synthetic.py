"""Synthetic token batches with learnable structure, for tests and the offline `train` demo.

A fixed random Markov chain: each token has `branching` possible successors drawn once from
the seed, picked uniformly at each position. The achievable loss is ln(branching) (1.39 nats
for 4), far below the ln(vocab) a fresh model starts near, so a falling loss is easy to see.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


def markov_rows(successors_VxK: np.ndarray, rng: np.random.Generator, n: int, seq_len: int) -> np.ndarray:
    """uint32 [n, seq_len]: `n` walks of the chain `successors_VxK` (a uniform start token, then
    a uniformly picked successor at each position), drawn from `rng`."""
    vocab_size, branching = successors_VxK.shape
    out = np.empty((n, seq_len), np.uint32)
    out[:, 0] = rng.integers(0, vocab_size, size=n)
    choice_NxL = rng.integers(0, branching, size=(n, seq_len))
    for t in range(1, seq_len):
        out[:, t] = successors_VxK[out[:, t - 1], choice_NxL[:, t]]
    return out


def markov_batches(
    vocab_size: int, batch: int, seq_len: int, seed: int = 0, branching: int = 4
) -> Iterator[np.ndarray]:
    """Endless iterator of uint32 [batch, seq_len] token arrays."""
    rng = np.random.default_rng(seed)
    successors_VxK = rng.integers(0, vocab_size, size=(vocab_size, branching))
    while True:
        yield markov_rows(successors_VxK, rng, batch, seq_len)


class RandomRows:
    """A fixed table of uniform random token rows with a dataset's `samples(indices)`, standing in
    for the train shards where only shapes and determinism matter (validator tests and benches)."""

    n_samples = 256

    def __init__(self, seq_len: int, vocab: int, seed: int = 0):
        self.rows = np.random.default_rng(seed).integers(0, vocab, size=(self.n_samples, seq_len), dtype=np.int32)

    def samples(self, idx) -> np.ndarray:
        return self.rows[np.asarray(idx)]
