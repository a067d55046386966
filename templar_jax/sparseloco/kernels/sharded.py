"""The kernels per shard under `jax.shard_map`, with the contracts of the pure-JAX
`sparseloco.sharded.ef_compress_sharded` and `sharded_aggregate.aggregate_tensor_sharded`.

Each device runs the kernel on its local block (whole 64x64 chunks, see `plan_shards`); only
per-tensor scalars (quantizer statistics, peer norms, non-finite counts) are psum'ed over the
mesh axes in `plan.tensor_axes`. check_vma=False: pallas_call outputs carry no
varying-manual-axes annotation.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from templar_jax.sparseloco.aggregate import RULES, AggregationError
from templar_jax.sparseloco.kernels.aggregate import aggregate_payload_pallas
from templar_jax.sparseloco.kernels.backend import aggregation_kernel, resolve_backend
from templar_jax.sparseloco.kernels.compress import ef_compress_tensor_pallas
from templar_jax.sparseloco.payload import TensorPayload
from templar_jax.sparseloco.sharded import ShardPlan
from templar_jax.sparseloco.sharded_aggregate import _specs, place_payloads


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
    p, new_e = jax.shard_map(local, mesh=mesh, in_specs=(plan.spec, plan.spec),
                             out_specs=out_specs, check_vma=False)(e, delta)
    if two_d:
        flat_shape = p.idx.shape[: plan.batch_ndim] + (-1, geom.k)
        p = p._replace(idx=p.idx.reshape(flat_shape), codes=p.codes.reshape(flat_shape))
    return p, new_e


def aggregate_tensor_sharded_pallas(payloads: Sequence[TensorPayload], shape, *, plan: ShardPlan,
                                    mesh: Mesh, rule: str = "median_clip",
                                    backend: str | None = "auto",
                                    tiles_per_block: int | None = None):
    """`sparseloco.sharded_aggregate.aggregate_tensor_sharded` with the tile kernel per shard:
    the update is born with the parameter's sharding and no parameter-sized data moves."""
    if rule not in RULES:
        raise AggregationError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")
    if not payloads:
        raise AggregationError("aggregate_tensor_sharded_pallas needs at least one payload")
    placed, valid_R = place_payloads(payloads, shape, plan=plan, mesh=mesh)
    backend = resolve_backend(backend)
    return _aggregate_blocks_pallas(placed, valid_R, plan=plan, mesh=mesh, rule=rule,
                                    backend=backend, tiles=tiles_per_block,
                                    kernel=aggregation_kernel(backend))


@partial(jax.jit, static_argnames=("plan", "mesh", "rule", "backend", "tiles", "kernel"))
def _aggregate_blocks_pallas(stacked: TensorPayload, valid_R, *, plan, mesh, rule, backend, tiles,
                             kernel):
    geom = plan.local_geom

    def local(p, valid):
        r = p.idx.shape[0]
        batch_shape = p.shift.shape[1:]
        b = math.prod(batch_shape)
        flat_R = TensorPayload(
            idx=p.idx.reshape(r, b, geom.num_chunks, geom.k).astype(jnp.int32),
            codes=p.codes.reshape(r, b, geom.num_chunks, geom.k),
            shift=p.shift.reshape(r, b), scale=p.scale.reshape(r, b),
            lut=p.lut.reshape(r, b, -1))
        dense = aggregate_payload_pallas(flat_R, valid, geom=geom, rule=rule,
                                         axis_names=plan.tensor_axes, backend=backend,
                                         tiles_per_block=tiles, kernel=kernel)
        tensor_local = tuple(g * t for g, t in zip(geom.grid, geom.tile))
        return dense.reshape(batch_shape + tensor_local)

    return jax.shard_map(local, mesh=mesh, in_specs=(_specs(plan), P()), out_specs=plan.spec,
                         check_vma=False)(stacked, valid_R)
