"""What a Pallas backend needs: its `pallas_call` settings and the chunk geometries it can tile.

Backends ("interpret": the Pallas interpreter on any platform, exact and slow, used by tests;
"triton": NVIDIA GPUs; "mosaic_tpu": TPUs) are chosen by `KernelConfig.backend`. The kernel
cores fall back to the pure-JAX core for geometries their backend cannot tile;
`unsupported_reason` says why.
"""

from __future__ import annotations

import jax.numpy as jnp

from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.kernels.config import KernelConfig, KernelConfigError


def pallas_call_kwargs(config: KernelConfig, *, num_stages: int = 1, grid_rank: int = 3) -> dict:
    """`interpret=` / `compiler_params=` for `pl.pallas_call` under a resolved config."""
    if config.backend == "interpret":
        return {"interpret": True}
    if config.backend == "triton":
        from jax.experimental.pallas import triton as pl_triton
        return {"compiler_params": pl_triton.CompilerParams(num_warps=config.num_warps,
                                                            num_stages=num_stages)}
    if config.backend == "mosaic_tpu":
        from jax.experimental.pallas import tpu as pl_tpu
        return {"compiler_params": pl_tpu.CompilerParams(
            dimension_semantics=("parallel",) * grid_rank)}
    raise KernelConfigError(f"no pallas_call settings for backend {config.backend!r}")


def compress_tiles(backend: str) -> int:
    """Chunks per compression program along the column axis: Mosaic TPU wants 128-lane blocks and
    8-row payload blocks, so 8 tiles of 64 columns; elsewhere one 64x64 tile (4096 values)."""
    return 8 if backend == "mosaic_tpu" else 1


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def unsupported_reason(geom: ChunkGeometry, dtype, backend: str, tiles: int) -> str | None:
    """None when the kernel can run this chunk geometry, else a short reason."""
    if len(geom.tile) != 2:
        return "1-D tensors (tiny norm scales) stay on the pure-JAX path"
    if jnp.dtype(dtype) != jnp.float32:
        return f"kernels take float32 buffers, got {jnp.dtype(dtype)}"
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


def kernel_tiles(geom: ChunkGeometry, dtype, backend: str, tiles: int) -> tuple[int, str | None]:
    """(chunks per program, None) or (_, why `backend` cannot tile this geometry): `tiles`, or 1
    where the column tiles do not split into blocks of it."""
    if len(geom.tile) == 2 and geom.grid[1] % tiles:
        tiles = 1
    return tiles, unsupported_reason(geom, dtype, backend, tiles)
