"""The fused compression kernel per shard under `jax.shard_map` (same contract as
`sparseloco.sharded.ef_compress_sharded`, which runs the pure-JAX step).

Each device runs the kernel on its local block (whole 64x64 chunks, see `plan_shards`); only
the quantizer's per-tensor scalars are psum'ed over the mesh axes in `plan.tensor_axes`.
"""

from __future__ import annotations

import jax
from jax.sharding import Mesh, PartitionSpec as P

from templar_jax.sparseloco.kernels.compress import ef_compress_tensor_pallas
from templar_jax.sparseloco.payload import TensorPayload
from templar_jax.sparseloco.sharded import ShardPlan


def ef_compress_sharded_pallas(e, delta, *, beta: float, plan: ShardPlan, mesh: Mesh,
                               bins: int = 4, sigma_range: float = 6.0,
                               backend: str | None = "auto", tiles_per_block: int | None = None):
    """Per-shard `ef_compress_tensor_pallas`; payload in the canonical [*batch, C, k] layout."""
    entries = tuple(plan.spec)
    batch_entries, tensor_entries = entries[: plan.batch_ndim], entries[plan.batch_ndim:]
    geom = plan.local_geom
    two_d = len(geom.tile) == 2
    block_spec = P(*batch_entries, *tensor_entries, None)

    def local(e_l, d_l):
        p, new_e = ef_compress_tensor_pallas(
            e_l, d_l, beta=beta, geom=geom, bins=bins, sigma_range=sigma_range,
            axis_names=plan.tensor_axes, backend=backend, tiles_per_block=tiles_per_block)
        if two_d:  # local chunk grid as its own axes so the global grid assembles correctly
            grid_shape = e_l.shape[: plan.batch_ndim] + geom.grid + (geom.k,)
            p = p._replace(idx=p.idx.reshape(grid_shape), codes=p.codes.reshape(grid_shape))
        return p, new_e

    out_specs = (TensorPayload(block_spec, block_spec, P(*batch_entries), P(*batch_entries),
                               P(*batch_entries, None)), plan.spec)
    # check_vma=False: pallas_call outputs carry no varying-manual-axes annotation.
    p, new_e = jax.shard_map(local, mesh=mesh, in_specs=(plan.spec, plan.spec),
                             out_specs=out_specs, check_vma=False)(e, delta)
    if two_d:
        flat_shape = p.idx.shape[: plan.batch_ndim] + (-1, geom.k)
        p = p._replace(idx=p.idx.reshape(flat_shape), codes=p.codes.reshape(flat_shape))
    return p, new_e
