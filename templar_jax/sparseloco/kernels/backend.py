"""Which Pallas backend runs a kernel, and the shapes each backend can take.

`backend` names: "interpret" (any platform, Pallas interpreter: exact, slow, used by tests),
"triton" (NVIDIA GPUs), "mosaic_tpu" (TPUs), "auto" (triton on gpu, mosaic_tpu on tpu,
interpret on cpu). Kernels fall back to the pure-JAX path for shapes a backend cannot tile;
`unsupported_reason` says why, so callers can log it.
"""

from __future__ import annotations

import os

import jax

from templar_jax.sparseloco.geometry import ChunkGeometry

BACKENDS = ("auto", "interpret", "triton", "mosaic_tpu")


class KernelConfigError(ValueError):
    """An unknown backend name or a kernel option that cannot work."""


def resolve_backend(backend: str | None) -> str:
    """Concrete backend name for `backend` ("auto"/None picks from the default device)."""
    backend = backend or "auto"
    if backend not in BACKENDS:
        raise KernelConfigError(f"unknown Pallas backend {backend!r}; expected one of {BACKENDS}")
    if backend != "auto":
        return backend
    platform = jax.default_backend()
    return {"gpu": "triton", "cuda": "triton", "tpu": "mosaic_tpu"}.get(platform, "interpret")


def default_tiles_per_block(backend: str, kernel: str = "compress") -> int:
    """Chunks handled by one kernel program along the column axis.

    Mosaic TPU wants 128-lane blocks and 8-row payload blocks, so 8 tiles of 64 columns; Triton
    takes one 64x64 tile (4096 values) per compression program and the tuned count per
    aggregation program (`tuned.py`).
    """
    if backend == "mosaic_tpu":
        return 8
    if backend == "triton" and kernel == "aggregate":
        return int(tuned_variant("aggregate")["tiles"])
    return 1


def tuned_variant(kernel: str) -> dict[str, str]:
    """The parsed `tuned.py` variant of "compress" or "aggregate" (what `auto` runs on GPUs)."""
    from templar_jax.sparseloco.kernels import tuned
    from templar_jax.sparseloco.kernels.variants import (
        parse_aggregate_variant, parse_compress_variant)

    if kernel == "compress":
        return parse_compress_variant(tuned.GPU_COMPRESS)
    if kernel == "aggregate":
        return parse_aggregate_variant(tuned.GPU_AGGREGATE)
    raise KernelConfigError(f"no tuned variant for kernel {kernel!r}")


def _auto(raw: str, backend: str, kernel: str, field: str, reference: str) -> str:
    """An `auto` knob: the tuned GPU variant's field on Triton, the reference form elsewhere."""
    if raw != "auto":
        return raw
    return tuned_variant(kernel)[field] if backend == "triton" else reference


def _env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """A tuning knob read from the environment when a kernel is traced; a typed error names it."""
    raw = os.environ.get(name, default)
    if raw not in choices:
        raise KernelConfigError(f"{name}={raw!r}: expected one of {choices}")
    return raw


# Warps per Triton program: "auto" (the tuned variant's, per kernel) or a count for every
# kernel (bench/compress.py --variants sweeps it on a GPU).
TRITON_NUM_WARPS_ENV = "TEMPLAR_TRITON_NUM_WARPS"
NUM_WARPS = ("1", "2", "4", "8", "16", "32")


def triton_num_warps(kernel: str = "compress") -> int:
    raw = _env_choice(TRITON_NUM_WARPS_ENV, "auto", ("auto",) + NUM_WARPS)
    return int(_auto(raw, "triton", kernel, "num_warps", "4"))


# How the kernels' exact one-hot matmuls run: "f32" (float32 at HIGHEST precision: CUDA-core
# FMAs on a GPU), "bf16" (bfloat16 operands split so every product stays exact, float32
# accumulation: tensor cores), or "auto" (the tuned GPU variant's on Triton -- bf16: the
# compression kernel ran 2.8x faster with it than with f32 on an H200; f32 elsewhere, TPU
# unmeasured). Same bits either way.
KERNEL_DOTS_ENV = "TEMPLAR_KERNEL_DOTS"
KERNEL_DOTS = ("auto", "f32", "bf16")


def kernel_dots_bf16(backend: str, kernel: str = "compress") -> bool:
    raw = _env_choice(KERNEL_DOTS_ENV, "auto", KERNEL_DOTS)
    return _auto(raw, backend, kernel, "dots", "f32") == "bf16"


# Bits per radix-select step in the compression kernel: 1 (31 + 12 dependent count passes per
# tile); 2 or 3 trade more independent counts for fewer dependent steps; "auto": the tuned
# GPU variant's on Triton, 1 elsewhere (bench/compress.py --variants DOTS:WARPS:RADIX sweeps it).
KERNEL_RADIX_BITS_ENV = "TEMPLAR_KERNEL_RADIX_BITS"
RADIX_BITS = ("1", "2", "3", "4")


def kernel_radix_bits(backend: str) -> int:
    raw = _env_choice(KERNEL_RADIX_BITS_ENV, "auto", ("auto",) + RADIX_BITS)
    return int(_auto(raw, backend, "compress", "radix_bits", "1"))


# How the compression kernel's radix select runs: "full" (every step: 31 + 12 dependent count
# passes per tile at radix 1; the form measured on an H200), "early" (stop once exactly k
# entries qualify, skip the index tie-break when every tie is needed, at any radix: on Gaussian
# tiles 16.3 of 43 steps at radix 1, 8.4 of 22 at radix 2 (bench/select_steps.py); same mask),
# or "auto" (the tuned GPU variant's on Triton, full elsewhere).
KERNEL_SELECT_ENV = "TEMPLAR_KERNEL_SELECT"
KERNEL_SELECTS = ("auto", "full", "early")


def kernel_select_early(backend: str) -> bool:
    raw = _env_choice(KERNEL_SELECT_ENV, "auto", KERNEL_SELECTS)
    return _auto(raw, backend, "compress", "select", "full") == "early"


# How the compression kernel compacts a tile's k selected entries into its output rows:
# "onehot" (row one-hots and small exact matmuls, every backend; measured on an H200), "scatter"
# (each selected entry stored at its row-major rank from two prefix sums; Triton and the
# interpreter; not yet timed on a GPU), or "auto" (the tuned GPU variant's on Triton, onehot
# elsewhere).
KERNEL_COMPACT_ENV = "TEMPLAR_KERNEL_COMPACT"
KERNEL_COMPACTS = ONEHOT_OR_SCATTER = ("auto", "onehot", "scatter")


def _onehot_or_scatter(name: str, backend: str, kernel: str, field: str) -> str:
    """A one-hot-or-scatter knob ("auto": `_auto`); scatter needs a vector scatter (Triton's
    pointer stores, or the interpreter)."""
    raw = _env_choice(name, "auto", ONEHOT_OR_SCATTER)
    if raw == "scatter" and backend == "mosaic_tpu":
        raise KernelConfigError(f"{name}=scatter: Mosaic TPU has no vector scatter; use onehot "
                                "or auto")
    return _auto(raw, backend, kernel, field, "onehot")


def kernel_compaction(backend: str) -> str:
    return _onehot_or_scatter(KERNEL_COMPACT_ENV, backend, "compress", "compact")


# Which Pallas aggregation kernel runs: "onehot" (dense per-peer tiles from one-hot matmuls;
# measured on an H200, and on Mosaic TPU the only one), "scatter" (per-peer gather/add/scatter
# inside each chunk, Triton and the interpreter: O(k) instead of O(k * chunk) work per peer and
# chunk; not yet timed on a GPU), or "auto" (the tuned GPU variant's on Triton, onehot
# elsewhere).
AGG_KERNEL_ENV = "TEMPLAR_AGG_KERNEL"
AGG_KERNELS = ONEHOT_OR_SCATTER


def aggregation_kernel(backend: str) -> str:
    return _onehot_or_scatter(AGG_KERNEL_ENV, backend, "aggregate", "kernel")


def pallas_call_kwargs(backend: str, *, kernel: str, num_warps: int | None = None,
                       num_stages: int = 1, grid_rank: int = 3) -> dict:
    """`interpret=` / `compiler_params=` for `pl.pallas_call` of `kernel` ("compress" or
    "aggregate") on `backend`."""
    if backend == "interpret":
        return {"interpret": True}
    if backend == "triton":
        num_warps = num_warps or triton_num_warps(kernel)
        from jax.experimental.pallas import triton as pl_triton
        return {"compiler_params": pl_triton.CompilerParams(num_warps=num_warps,
                                                            num_stages=num_stages)}
    if backend == "mosaic_tpu":
        from jax.experimental.pallas import tpu as pl_tpu
        return {"compiler_params": pl_tpu.CompilerParams(
            dimension_semantics=("parallel",) * grid_rank)}
    raise KernelConfigError(f"no pallas_call settings for backend {backend!r}")


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def unsupported_reason(geom: ChunkGeometry, dtype, backend: str, tiles: int) -> str | None:
    """None when the kernel can run this chunk geometry, else a short reason."""
    if len(geom.tile) != 2:
        return "1-D tensors (tiny norm scales) stay on the pure-JAX path"
    if jax.numpy.dtype(dtype) != jax.numpy.float32:
        return f"kernels take float32 buffers, got {jax.numpy.dtype(dtype)}"
    h, w = geom.tile
    if geom.grid[1] % tiles:
        return f"{geom.grid[1]} column tiles do not split into blocks of {tiles}"
    if backend == "interpret":
        return None
    if not (_pow2(h) and _pow2(w) and _pow2(geom.k) and _pow2(tiles)):
        return f"tile {h}x{w}, k={geom.k}: {backend} blocks must be powers of two"
    if min(h, w) < 16:
        return f"tile {h}x{w}: {backend} matmuls need both sides >= 16"
    if backend == "mosaic_tpu" and (w * tiles) % 128:
        return f"mosaic_tpu needs 128-lane blocks, got {w}x{tiles} columns"
    return None
