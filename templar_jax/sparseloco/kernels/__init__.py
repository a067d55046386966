"""Pallas kernels for SparseLoCo compression and aggregation (drop-ins for the pure-JAX path).

- `ef_compress_tensor_pallas(e, delta, *, beta, geom, bins, sigma_range, axis_names, backend)`:
  same signature and bit-identical results as `sparseloco.compress.ef_compress_tensor`.
- `aggregate_tensor_pallas(payloads, shape, *, rule, chunk, batch_ndim, backend)`: same as
  `sparseloco.aggregate_tensor`; `aggregate_dense_pallas(idx, vals, valid_R, *, geom, rule,
  axis_names, backend)` is the in-jit core (as `aggregate.aggregate_chunks`, but it writes the
  tensor layout directly, so no `from_chunks` pass follows); `aggregate_payload_pallas` takes
  the payload arrays instead and lets the scatter kernel decode them. Two aggregation kernels:
  one-hot tiles (`aggregate.py`, every backend) and in-chunk scatter (`aggregate_scatter.py`,
  Triton and interpret); `TEMPLAR_AGG_KERNEL` picks (backend.aggregation_kernel).
- `backend`: "auto" | "interpret" | "triton" | "mosaic_tpu"; shapes a backend cannot tile fall
  back to the pure-JAX functions. Interpret mode is verified exact on CPU; the one-hot kernels
  ran exact on an H200 (Triton); the scatter variants and Mosaic TPU have lowered but not yet
  run on a device (`bench/device_check.sh`).
NaN/Inf policy: non-finite error-feedback values are selected as the largest magnitudes (NaN
above +Inf, as XLA's top_k on CPU does); the aggregate zeroes any reference tensor with a
non-finite result, exactly as the pure path.
"""

from templar_jax.sparseloco.kernels.aggregate import (
    aggregate_dense_pallas, aggregate_payload_pallas, aggregate_tensor_pallas, scatter_mean_tiles)
from templar_jax.sparseloco.kernels.aggregate_scatter import scatter_sum_tiles
from templar_jax.sparseloco.kernels.backend import (
    BACKENDS, KernelConfigError, resolve_backend, unsupported_reason)
from templar_jax.sparseloco.kernels.compress import (
    ef_compress_tensor_pallas, ef_select, scatter_residual)
from templar_jax.sparseloco.kernels.sharded import (
    aggregate_tensor_sharded_pallas, ef_compress_sharded_pallas)
from templar_jax.sparseloco.kernels.tile_select import tile_topk

__all__ = [
    "BACKENDS", "KernelConfigError", "aggregate_dense_pallas", "aggregate_payload_pallas",
    "aggregate_tensor_pallas",
    "aggregate_tensor_sharded_pallas", "ef_compress_sharded_pallas",
    "ef_compress_tensor_pallas",
    "ef_select", "resolve_backend", "scatter_mean_tiles", "scatter_residual", "scatter_sum_tiles",
    "tile_topk",
    "unsupported_reason",
]
