"""Which core runs SparseLoCo's compression and aggregation: `impl` "jax", "pallas" or "auto".

Each operation has one core contract on one block of chunks (a whole tensor, or one device's
shard), met by a pure-JAX core and a Pallas core with bit-identical results:
  compress   (e, delta, *, beta, geom, bins, sigma_range, axis_names) -> (TensorPayload, new e)
             `compress.ef_compress_tensor` | `kernels.compress.ef_compress_tensor_pallas`
  aggregate  (flat_R, valid_R, *, geom, rule, axis_names) -> dense [B, *block shape]
             `rules.aggregate_block` | `kernels.aggregate.aggregate_block_pallas`
so the unsharded call and the shard_map wrappers (`sharded.py`) take either. "auto" takes the
kernel where `kernels/tuned.py` records it measured faster on GPUs (compression; aggregation
once GPU_AGGREGATE_BEATS_PURE); TPUs (kernels lower but are unmeasured there) and CPUs (the
interpreter only) run pure JAX. Which kernel variant runs is the `KernelConfig`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax

from templar_jax.sparseloco.compress import ef_compress_tensor
from templar_jax.sparseloco.geometry import CompressionConfigError
from templar_jax.sparseloco.kernels import tuned
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.sparseloco.rules import AggregationError, aggregate_block

IMPLS = ("jax", "pallas", "auto")
_GPU_PLATFORMS = ("gpu", "cuda")
_ERRORS = {"compress": CompressionConfigError, "aggregate": AggregationError}


def resolve_impl(impl: str, op: str) -> str:
    """"jax" or "pallas" for `op` ("compress" or "aggregate"); an unknown `impl` raises the op's
    typed error (CompressionConfigError / AggregationError)."""
    if impl not in IMPLS:
        raise _ERRORS[op](f"unknown SparseLoCo implementation {impl!r} for {op}; expected one "
                          f"of {IMPLS}")
    if impl != "auto":
        return impl
    if jax.default_backend() not in _GPU_PLATFORMS:
        return "jax"
    return "pallas" if op == "compress" or tuned.GPU_AGGREGATE_BEATS_PURE else "jax"


def compress_core(impl: str, kernel: KernelConfig) -> Callable:
    """The compression core of `impl` (Pallas: with `kernel`'s variant)."""
    if resolve_impl(impl, "compress") == "pallas":
        # imported here: only the kernel path needs Pallas loaded
        from templar_jax.sparseloco.kernels.compress import ef_compress_tensor_pallas

        return partial(ef_compress_tensor_pallas, config=kernel)
    return ef_compress_tensor


def aggregate_core(impl: str, kernel: KernelConfig, ordered: bool = False) -> Callable:
    """The aggregation core of `impl` (Pallas: with `kernel`'s variant, which adds peers in
    order by construction; pure JAX: `ordered` adds them one scatter at a time)."""
    if resolve_impl(impl, "aggregate") == "pallas":
        from templar_jax.sparseloco.kernels.aggregate import aggregate_block_pallas

        return partial(aggregate_block_pallas, config=kernel)
    return partial(aggregate_block, ordered=ordered)


def needs_vma_check(impl: str, op: str) -> bool:
    """shard_map's check_vma for `impl`'s core: off for Pallas (pallas_call outputs carry no
    varying-manual-axes annotation)."""
    return resolve_impl(impl, op) == "jax"
