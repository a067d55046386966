"""Per-shard compression under `jax.shard_map`: no device ever holds a full parameter.

When every sharded tensor dim splits into local blocks that hold whole chunks (local size a
multiple of the global tile, e.g. shard dims that are multiples of 64), chunk selection, the
residual and the scatter are purely local; the per-tensor quantizer statistics (count, sum,
centred sum of squares, per-bin sums/counts) are completed with `psum` over the mesh axes that
shard the tensor dims. Payload arrays leave the shard_map as [*batch, Y, X, k] blocks and are
reshaped to the canonical [*batch, Y*X, k] (that moves only payload-sized data, 1/64 of the
tensor).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
from jax.sharding import Mesh, PartitionSpec as P

from templar_jax.sparseloco.compress import ef_compress_tensor, tensor_geometry
from templar_jax.sparseloco.geometry import ChunkGeometry
from templar_jax.sparseloco.payload import TensorPayload


class ShardPlan(NamedTuple):
    spec: P                      # the parameter's spec, one entry per dim
    tensor_axes: tuple[str, ...]  # mesh axes that shard the 1-D/2-D tensor dims (psum over them)
    local_geom: ChunkGeometry    # chunk grid of one local block (global tile and k)
    batch_ndim: int


def _axes(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, (tuple, list)) else (entry,)


def plan_shards(shape, spec: P, mesh: Mesh, batch_ndim: int, *, chunk: int = 64,
                topk: int = 64) -> ShardPlan | None:
    """A ShardPlan when local shards hold whole chunks, else None (compress unsharded)."""
    shape = tuple(int(s) for s in shape)
    entries = tuple(spec) + (None,) * (len(shape) - len(tuple(spec)))
    _, geom = tensor_geometry(shape, batch_ndim, chunk=chunk, topk=topk)
    local_grid, tensor_axes = [], []
    for i, (dim, tile) in enumerate(zip(shape[batch_ndim:], geom.tile)):
        axes = _axes(entries[batch_ndim + i])
        n = math.prod(mesh.shape[a] for a in axes)
        if dim % n or (dim // n) % tile:
            return None
        local_grid.append(dim // n // tile)
        tensor_axes.extend(axes)
    for dim, entry in zip(shape[:batch_ndim], entries[:batch_ndim]):
        if dim % math.prod(mesh.shape[a] for a in _axes(entry)):
            return None
    num_local = math.prod(local_grid)
    local_geom = ChunkGeometry(geom.tile, tuple(local_grid), num_local, geom.chunk_size, geom.k)
    return ShardPlan(P(*entries), tuple(tensor_axes), local_geom, batch_ndim)


def ef_compress_sharded(e, delta, *, beta: float, plan: ShardPlan, mesh: Mesh, bins: int = 4,
                        sigma_range: float = 6.0):
    """`ef_compress_tensor` run on local shards; same results as the unsharded call."""
    entries = tuple(plan.spec)
    batch_entries, tensor_entries = entries[: plan.batch_ndim], entries[plan.batch_ndim:]
    two_d = len(plan.local_geom.tile) == 2
    block_spec = P(*batch_entries, *tensor_entries, None)
    side_spec = P(*batch_entries)

    def local(e_l, d_l):
        p, new_e = ef_compress_tensor(e_l, d_l, beta=beta, geom=plan.local_geom, bins=bins,
                                      sigma_range=sigma_range, axis_names=plan.tensor_axes)
        if two_d:
            grid_shape = e_l.shape[: plan.batch_ndim] + plan.local_geom.grid + (plan.local_geom.k,)
            p = p._replace(idx=p.idx.reshape(grid_shape), codes=p.codes.reshape(grid_shape))
        return p, new_e

    out_specs = (TensorPayload(block_spec, block_spec, side_spec, side_spec,
                               P(*batch_entries, None)), plan.spec)
    p, new_e = jax.shard_map(local, mesh=mesh, in_specs=(plan.spec, plan.spec),
                             out_specs=out_specs)(e, delta)
    if two_d:
        flat_shape = p.idx.shape[: plan.batch_ndim] + (-1, plan.local_geom.k)
        p = p._replace(idx=p.idx.reshape(flat_shape), codes=p.codes.reshape(flat_shape))
    return p, new_e
