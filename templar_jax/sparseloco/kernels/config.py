"""Which kernel variant runs: a frozen, hashable configuration passed to the jitted functions as a
static argument, so a changed option is part of jit's cache key and retraces (no environment
variable is read at trace time).

`auto` fields (and 0 for the counts) resolve per backend (`KernelConfig.resolve`): on Triton
(NVIDIA GPUs) to the measured variants in `tuned.py`, elsewhere (the interpreter, Mosaic TPU) to
the reference forms. Benches name variants as short specs (`KernelConfig.parse`):

    compression  DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]]   e.g. bf16:8:1:scatter:early
    aggregation  KERNEL:WARPS:TILES[:DOTS]               e.g. scatter:8:1
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import jax

from templar_jax.sparseloco.kernels import tuned

BACKENDS = ("auto", "interpret", "triton", "mosaic_tpu")
DOTS = ("auto", "f32", "bf16")
NUM_WARPS = (0, 1, 2, 4, 8, 16, 32)  # 0: the tuned count per kernel
RADIX_BITS = (0, 1, 2, 3, 4)  # 0: the tuned value on Triton, 1 elsewhere
COMPACTS = ("auto", "onehot", "scatter")
SELECTS = ("auto", "full", "early")
AGGREGATE_KERNELS = ("auto", "onehot", "scatter")
AGGREGATE_TILES = (0, 1, 2, 4, 8, 16)  # 0: the backend's default
OPS = ("compress", "aggregate")

# The one list of options that lower and run exact (interpret mode, and the lowering tests) but
# have not been timed on a device (bench/device_check.sh times them); `auto` picks them only
# once tuned.py records them as measured winners.
UNMEASURED = {"backend": ("mosaic_tpu",), "radix_bits": (2, 3, 4), "compact": ("scatter",),
              "select": ("early",), "aggregate": ("scatter",)}

# What `auto` resolves to off Triton (the interpreter, Mosaic TPU): the reference forms.
REFERENCE = {"dots": "f32", "num_warps": 4, "radix_bits": 1, "compact": "onehot",
             "select": "full", "aggregate": "onehot", "aggregate_tiles": 1}

# The spec grammar per op: (field, allowed values in a spec, default when omitted or None when
# required). Omitted fields are fixed forms (not "auto"), so a spec names the same kernel
# whatever tuned.py says: "bf16:4" is the one-hot, full-select kernel first measured on the H200.
_SPEC_FIELDS = {
    "compress": (("dots", DOTS, None), ("num_warps", NUM_WARPS[1:], None),
                 ("radix_bits", RADIX_BITS[1:], 1), ("compact", COMPACTS[1:], "onehot"),
                 ("select", SELECTS[1:], "full")),
    "aggregate": (("aggregate", AGGREGATE_KERNELS[1:], None), ("num_warps", NUM_WARPS[1:], None),
                  ("aggregate_tiles", AGGREGATE_TILES[1:], None), ("dots", DOTS, "bf16")),
}
_GRAMMAR = {"compress": "DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]]",
            "aggregate": "KERNEL:WARPS:TILES[:DOTS]"}


class KernelConfigError(ValueError):
    """An unknown kernel option value; the message names the option."""


def resolve_backend(backend: str | None) -> str:
    """Concrete backend name for `backend` ("auto"/None picks from the default device)."""
    backend = backend or "auto"
    if backend not in BACKENDS:
        raise KernelConfigError(f"unknown Pallas backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    platform = jax.default_backend()
    return {"gpu": "triton", "cuda": "triton", "tpu": "mosaic_tpu"}.get(platform, "interpret")


def _check_op(op: str) -> None:
    if op not in OPS:
        raise KernelConfigError(f"unknown kernel op {op!r}; expected one of {OPS}")


@dataclass(frozen=True)
class KernelConfig:
    """Kernel options (run config section `sparseloco.kernel`; all default to `auto`).

    backend: Pallas backend ("auto" picks from the default device).
    dots: how the exact one-hot matmuls run (f32 CUDA-core FMAs or exact bf16 splits).
    num_warps: warps per Triton program.
    radix_bits: bits per radix-select step in the compression kernel.
    compact: how a tile's selected entries are compacted (one-hot matmuls or a scatter).
    select: radix select running every step ("full") or stopping early ("early").
    aggregate: which aggregation kernel runs (one-hot tiles or in-chunk scatter).
    aggregate_tiles: chunks per aggregation program along the column axis.
    """

    backend: str = "auto"
    dots: str = "auto"
    num_warps: int = 0
    radix_bits: int = 0
    compact: str = "auto"
    select: str = "auto"
    aggregate: str = "auto"
    aggregate_tiles: int = 0

    def __post_init__(self) -> None:
        allowed = {"backend": BACKENDS, "dots": DOTS, "num_warps": NUM_WARPS,
                   "radix_bits": RADIX_BITS, "compact": COMPACTS, "select": SELECTS,
                   "aggregate": AGGREGATE_KERNELS, "aggregate_tiles": AGGREGATE_TILES}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or value not in allowed[f.name]:
                raise KernelConfigError(
                    f"sparseloco.kernel.{f.name}={value!r}: expected one of {allowed[f.name]}")

    def resolve(self, op: str = "compress") -> KernelConfig:
        """Every field concrete for kernel `op` ("compress" or "aggregate") on the concrete
        backend: an explicit value stays; `auto`/0 becomes the op's tuned.py variant on Triton
        (dots and warps are per op there) and the reference form elsewhere (8 chunks per
        aggregation program on Mosaic TPU, whose blocks are 128 lanes wide). Idempotent."""
        _check_op(op)
        backend = resolve_backend(self.backend)
        if backend == "triton":
            comp, agg, own = tuned_config("compress"), tuned_config("aggregate"), tuned_config(op)
            default = {"dots": own.dots, "num_warps": own.num_warps,
                       "radix_bits": comp.radix_bits, "compact": comp.compact,
                       "select": comp.select, "aggregate": agg.aggregate,
                       "aggregate_tiles": agg.aggregate_tiles}
        else:
            default = dict(REFERENCE, aggregate_tiles=8 if backend == "mosaic_tpu" else 1)
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out = {k: default[k] if v in ("auto", 0) else v for k, v in out.items() if k != "backend"}
        resolved = KernelConfig(backend=backend, **out)
        scatter_field = "compact" if op == "compress" else "aggregate"
        if backend == "mosaic_tpu" and getattr(resolved, scatter_field) == "scatter":
            raise KernelConfigError(f"sparseloco.kernel.{scatter_field}=scatter: Mosaic TPU has "
                                    "no vector scatter; use onehot or auto")
        return resolved

    @classmethod
    def parse(cls, spec: str, op: str, **others) -> KernelConfig:
        """A bench spec of `op` (grammar in the module docstring) as a config; `others` sets
        the remaining fields (e.g. backend)."""
        _check_op(op)
        spec_fields, grammar = _SPEC_FIELDS[op], _GRAMMAR[op]
        parts = spec.split(":")
        required = sum(default is None for *_, default in spec_fields)
        if not required <= len(parts) <= len(spec_fields):
            raise KernelConfigError(f"bad kernel variant {spec!r}: expected {grammar}")
        values = {}
        for (name, allowed, default), text in zip(spec_fields, parts + [None] * len(spec_fields)):
            value = default if text is None else (int(text) if text.isdigit() else text)
            if value not in allowed:
                raise KernelConfigError(f"bad kernel variant {spec!r}: {name} must be one of "
                                        f"{allowed}, got {text!r} ({grammar})")
            values[name] = value
        return cls(**values, **others)

    def spec(self, op: str) -> str:
        """This config's fields of `op` in spec form (of a resolved config: the form tuned.py
        takes and the bench's `best` line prints)."""
        _check_op(op)
        return ":".join(str(getattr(self, name)) for name, *_ in _SPEC_FIELDS[op])

    def unmeasured(self) -> tuple[str, ...]:
        """"field=value" for each option of this config in `UNMEASURED`."""
        return tuple(f"{name}={getattr(self, name)}" for name, values in UNMEASURED.items()
                     if getattr(self, name) in values)


def tuned_config(op: str) -> KernelConfig:
    """The tuned.py variant of `op` (what `auto` runs on Triton)."""
    _check_op(op)
    return KernelConfig.parse(tuned.GPU_COMPRESS if op == "compress" else tuned.GPU_AGGREGATE, op)
