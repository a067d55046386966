"""Pallas kernels for SparseLoCo compression and aggregation: drop-in cores for the pure-JAX ones
(`dispatch.py` picks), bit-identical on CPU in interpret mode.

- `compress.ef_compress_tensor_pallas`: the fused EF + per-chunk top-k pass over 64x64 tiles;
  the contract of `sparseloco.compress.ef_compress_tensor`.
- `aggregate.aggregate_block_pallas`: SPEC 2.4 into the tensor's layout with one of two kernels,
  one-hot tiles (`aggregate.py`, every backend) or in-chunk scatter (`aggregate_scatter.py`,
  Triton and the interpreter); the contract of `sparseloco.rules.aggregate_block`.
- `config.KernelConfig`: which variant runs (a static argument: a changed option retraces);
  `tuned.py`: the measured GPU variants that `auto` resolves to; `backend.py`: pallas_call
  settings and the geometries a backend can tile (others fall back to the pure core);
  `tile_select.py`: the sort-free top-k of one tile; `aot.py`: lowering for a GPU without one.
This package imports only `config` so that `import templar_jax.sparseloco` does not load Pallas.
"""

from templar_jax.sparseloco.kernels.config import KernelConfig, KernelConfigError

__all__ = ["KernelConfig", "KernelConfigError"]
