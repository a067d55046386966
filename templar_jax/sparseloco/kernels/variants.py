"""Kernel variants as short specs, for the benches that sweep them (bench/compress.py,
bench/kernel_resources.py) and for device runs:

    compression  DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]]   e.g. bf16:8:1:scatter:early
    aggregation  KERNEL:WARPS:TILES[:DOTS]               e.g. scatter:8:1

Each field is one of the tuning knobs in `backend.py`; `knob_env` gives the environment that
selects the variant (the knobs are read when a kernel is traced) and `apply_knobs` sets it.
"""

from __future__ import annotations

import os

from templar_jax.sparseloco.kernels.backend import (
    AGG_KERNEL_ENV, AGG_KERNELS, KERNEL_COMPACT_ENV, KERNEL_COMPACTS, KERNEL_DOTS, KERNEL_DOTS_ENV,
    KERNEL_RADIX_BITS_ENV, KERNEL_SELECT_ENV, KERNEL_SELECTS, NUM_WARPS, RADIX_BITS,
    TRITON_NUM_WARPS_ENV, KernelConfigError)

# (field, environment variable or None for a call argument, allowed values, default). Omitted
# fields default to fixed forms (not "auto"), so a spec names the same kernel whatever tuned.py
# says: "bf16:4" is the one-hot, full-select kernel first measured on the H200.
COMPRESS_FIELDS = (("dots", KERNEL_DOTS_ENV, KERNEL_DOTS, None),
                   ("num_warps", TRITON_NUM_WARPS_ENV, NUM_WARPS, None),
                   ("radix_bits", KERNEL_RADIX_BITS_ENV, RADIX_BITS, "1"),
                   ("compact", KERNEL_COMPACT_ENV, KERNEL_COMPACTS, "onehot"),
                   ("select", KERNEL_SELECT_ENV, KERNEL_SELECTS, "full"))
AGGREGATE_FIELDS = (("kernel", AGG_KERNEL_ENV, AGG_KERNELS[1:], None),
                    ("num_warps", TRITON_NUM_WARPS_ENV, NUM_WARPS, None),
                    ("tiles", None, ("1", "2", "4", "8", "16"), None),
                    ("dots", KERNEL_DOTS_ENV, KERNEL_DOTS, "bf16"))


def _parse(spec: str, fields, grammar: str) -> dict[str, str]:
    parts = spec.split(":")
    required = sum(default is None for *_, default in fields)
    if not required <= len(parts) <= len(fields):
        raise KernelConfigError(f"bad kernel variant {spec!r}: expected {grammar}")
    out = {}
    for (name, _, allowed, default), value in zip(fields, parts + [None] * len(fields)):
        value = default if value is None else value
        if value not in allowed:
            raise KernelConfigError(f"bad kernel variant {spec!r}: {name} must be one of "
                                    f"{allowed}, got {value!r} ({grammar})")
        out[name] = value
    return out


def parse_compress_variant(spec: str) -> dict[str, str]:
    """{"dots", "num_warps", "radix_bits", "compact", "select"} from a compression spec."""
    return _parse(spec, COMPRESS_FIELDS, "DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]]")


def parse_aggregate_variant(spec: str) -> dict[str, str]:
    """{"kernel", "num_warps", "tiles", "dots"} from an aggregation spec."""
    return _parse(spec, AGGREGATE_FIELDS, "KERNEL:WARPS:TILES[:DOTS]")


def full_spec(variant: dict[str, str]) -> str:
    """A parsed variant as a spec with every field spelled out (the form tuned.py takes)."""
    fields = COMPRESS_FIELDS if "compact" in variant else AGGREGATE_FIELDS
    return ":".join(str(variant[name]) for name, *_ in fields)


def knob_env(variant: dict[str, str]) -> dict[str, str]:
    """The environment variables that select a parsed variant (tiles is a call argument)."""
    fields = COMPRESS_FIELDS if "compact" in variant else AGGREGATE_FIELDS
    return {env: variant[name] for name, env, _, _ in fields if env is not None}


def apply_knobs(variant: dict[str, str]) -> None:
    """Select `variant` for the kernels traced next: set its environment and drop jax's caches
    (a cached trace, e.g. of an inner jit, would keep the previous knobs)."""
    import jax

    os.environ.update(knob_env(variant))
    jax.clear_caches()
