"""Arrays of a mesh that spans processes: reading them on the host, and feeding batches.

A global array (sharded over every process's devices) cannot be read with `device_get`:
each process holds only its shards. `host_array` gathers it (a collective: every process
calls it, in the same order) and leaves a fully addressable array as it is. Batches: each
process loads only the rows its devices hold (`BatchFeed.local_rows`) and the global batch
is assembled from those slices (`BatchFeed.put`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def host_array(x: Any) -> np.ndarray:
    """`x` as one NumPy array on this host, whatever devices (of any process) hold it."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def host_tree(tree: Any) -> Any:
    """`host_array` of every leaf."""
    return jax.tree.map(host_array, tree)


class BatchFeed:
    """How token batches reach a train step on `mesh` (None: one device).

    One process: every row, as an int32 array (the step's shardings place it). Several
    processes: each loads and passes only its rows; `put` assembles the global [B, L] batch,
    sharded over (data, fsdp) like the step expects.
    """

    def __init__(self, mesh=None):
        self.mesh = mesh
        self.multiprocess = mesh is not None and jax.process_count() > 1

    def local_rows(self, rows: np.ndarray) -> np.ndarray:
        """The entries of a global batch's row indices that this process loads."""
        if not self.multiprocess:
            return rows
        from templar_jax.distributed import process_slice

        return np.asarray(rows)[process_slice(self.mesh, len(rows))]

    def put(self, tokens: np.ndarray) -> jax.Array:
        """This process's rows (all rows on one process) -> the step's batch."""
        if not self.multiprocess:
            return jnp.asarray(tokens, jnp.int32)
        from templar_jax.distributed import global_batch

        return global_batch(np.asarray(tokens, np.int32), self.mesh)
