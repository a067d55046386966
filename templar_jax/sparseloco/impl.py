"""Which code runs SparseLoCo's compression and aggregation: "jax", "pallas" or "auto".

"auto" follows bench/compress.py on one NVIDIA H200 (2026-11-27, one 70B decoder layer,
855.7M params; README "Results"):
  compression   Pallas kernel 23.4 ms vs pure JAX 60.3 ms, bitwise equal  -> kernel on GPUs
  aggregation   Pallas kernel 201 ms vs pure JAX 33 ms (20 peers)          -> pure JAX, until
                `kernels/tuned.py` records a GPU aggregation variant that beats it
TPUs (kernels lower but are unmeasured there) and CPUs (interpret mode only) run pure JAX.
"""

from __future__ import annotations

import jax

IMPLS = ("jax", "pallas", "auto")
_GPU_PLATFORMS = ("gpu", "cuda")


def resolve_impl(impl: str, op: str) -> str | None:
    """"jax" or "pallas" for `op` ("compress" or "aggregate"); None for an unknown `impl`
    (callers raise their own typed error)."""
    if impl not in IMPLS:
        return None
    if impl != "auto":
        return impl
    if jax.default_backend() not in _GPU_PLATFORMS:
        return "jax"
    from templar_jax.sparseloco.kernels.tuned import GPU_AGGREGATE_BEATS_PURE

    return "pallas" if op == "compress" or GPU_AGGREGATE_BEATS_PURE else "jax"
