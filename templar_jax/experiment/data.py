"""Token sources for the experiment harness: each replica gets its own disjoint data.

"bundled": the project's stdlib-docs corpus (templar_jax.data), train split partitioned across
replicas by a seeded permutation, held-out split for evaluation. "synthetic": a shared random
Markov chain (learnable, loss floor ln(branching)), each replica sampling its own sequences.
Every method in a comparison reads the same batches in the same order.
"""

from __future__ import annotations

import numpy as np

from templar_jax.data import ShardDataset, ensure_bundled_dataset
from templar_jax.train.synthetic import markov_rows


class ReplicaData:
    """replica_batch(replica, step) -> uint32 [batch, seq_len]; heldout -> uint32 [n_eval, seq_len]."""

    def __init__(self, source: str, *, replicas: int, batch: int, seq_len: int, vocab_size: int,
                 n_eval: int = 128, seed: int = 0):
        self.source, self.replicas, self.batch, self.seq_len = source, replicas, batch, seq_len
        rng = np.random.default_rng(seed)
        if source == "bundled":
            root = ensure_bundled_dataset(seq_len=seq_len)
            train = ShardDataset(root / "train", seq_len)
            heldout = ShardDataset(root / "heldout", seq_len)
            self._train = train.samples(np.arange(train.n_samples))
            self.heldout = heldout.samples(np.arange(min(n_eval, heldout.n_samples)))
            self.pad_id = 0  # bundled tokenizer: "<eos>" = 0
            if int(self._train.max()) >= vocab_size:
                raise ValueError(f"bundled corpus ids reach {int(self._train.max())}; "
                                 f"the model's vocab is {vocab_size}")
            perm = rng.permutation(len(self._train))
            self._parts = [perm[r::replicas] for r in range(replicas)]
        elif source == "synthetic":
            self._succ = rng.integers(0, vocab_size, size=(vocab_size, 4))
            self._rngs = [np.random.default_rng([seed, r]) for r in range(replicas)]
            self._cache: dict[tuple[int, int], np.ndarray] = {}
            self.heldout = self._markov(np.random.default_rng([seed, 10**6]), n_eval)
            self.pad_id = None
        else:
            raise ValueError(f"unknown data source {source!r} (bundled | synthetic)")

    @property
    def train_samples(self) -> int:
        return len(self._train) if self.source == "bundled" else -1

    def _markov(self, rng, n: int) -> np.ndarray:
        return markov_rows(self._succ, rng, n, self.seq_len)

    def replica_batch(self, replica: int, step: int) -> np.ndarray:
        if self.source == "bundled":
            part = self._parts[replica]
            pos = (np.arange(self.batch) + step * self.batch) % len(part)
            return self._train[part[pos]]
        key = (replica, step)
        if key not in self._cache:  # generated in step order per replica, cached for reuse
            self._cache[key] = self._markov(self._rngs[replica], self.batch)
        return self._cache[key]

    def stacked(self, step: int) -> np.ndarray:
        """uint32 [replicas, batch, seq_len] for one inner step."""
        return np.stack([self.replica_batch(r, step) for r in range(self.replicas)])
