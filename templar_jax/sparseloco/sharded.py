"""Compression and aggregation on local shards under `jax.shard_map`: no device ever holds a
full parameter. One wrapper per operation, around either core (pure JAX or Pallas).

When every sharded tensor dim splits into local blocks that hold whole chunks (local size a
multiple of the global tile, e.g. shard dims that are multiples of 64), chunk selection, the
residual, the scatter and the aggregation are purely local; per-tensor scalars (the quantizer
statistics: count, sum, centred sum of squares, per-bin sums/counts; peer norms; non-finite
counts) are completed with `psum` over the mesh axes that shard the tensor dims. Payload arrays
cross the shard_map boundary as [*batch, Y, X, k] blocks (the local chunk grid as its own axes,
so the global grid assembles correctly) and are reshaped to the canonical [*batch, Y*X, k]
outside (that moves only payload-sized data, 1/64 of the tensor).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from templar_jax.sparseloco.geometry import ChunkGeometry, tensor_geometry
from templar_jax.sparseloco.payload import TensorPayload, flat_payload, stack_peers


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
    """A ShardPlan when local shards hold whole chunks, else None (run unsharded)."""
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


def param_spec(name: str, x: Any, mesh: Mesh, param_specs: Mapping[str, Any] | None):
    """The PartitionSpec of parameter `name`: from `param_specs`, else from `x`'s NamedSharding
    on `mesh`; None when neither gives one (e.g. `x` is a tracer under an outer jit)."""
    if param_specs is not None and name in param_specs:
        return param_specs[name]
    try:
        sharding = x.sharding
    except Exception:  # a tracer, a shape tuple, a NumPy array: no concrete sharding
        return None
    if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
        return sharding.spec
    return None


def _payload_specs(plan: ShardPlan, stacked: bool) -> TensorPayload:
    """Specs of a payload's [*batch, Y, X, k] blocks (with a leading peer axis if `stacked`)."""
    entries = tuple(plan.spec)
    lead = (None,) if stacked else ()
    batch, tensor = lead + entries[: plan.batch_ndim], entries[plan.batch_ndim:]
    block = P(*batch, *tensor, None)
    return TensorPayload(block, block, P(*batch), P(*batch), P(*batch, None))


def _grid_blocks(p: TensorPayload, grid_shape) -> TensorPayload:
    return p._replace(idx=p.idx.reshape(grid_shape), codes=p.codes.reshape(grid_shape))


def compress_on_shards(core: Callable, e, delta, *, plan: ShardPlan, mesh: Mesh,
                       check_vma: bool = True, **kwargs):
    """`core(e, delta, geom=..., axis_names=..., **kwargs)` (a compression core: pure or
    Pallas) run on local shards; same results as the unsharded call. check_vma=False for
    Pallas cores (pallas_call outputs carry no varying-manual-axes annotation)."""
    geom = plan.local_geom
    two_d = len(geom.tile) == 2

    def local(e_l, d_l):
        p, new_e = core(e_l, d_l, geom=geom, axis_names=plan.tensor_axes, **kwargs)
        if two_d:
            return _grid_blocks(p, e_l.shape[: plan.batch_ndim] + geom.grid + (geom.k,)), new_e
        return p, new_e

    p, new_e = jax.shard_map(local, mesh=mesh, in_specs=(plan.spec, plan.spec),
                             out_specs=(_payload_specs(plan, False), plan.spec),
                             check_vma=check_vma)(e, delta)
    if two_d:
        p = _grid_blocks(p, p.idx.shape[: plan.batch_ndim] + (-1, geom.k))
        # merging the Y and X block axes would otherwise leave idx/codes replicated over the
        # mesh axes of X (each device a copy of that slice): keep them sharded over all
        # tensor axes instead (same values, payload-sized data)
        rows = NamedSharding(mesh, flat_chunk_spec(plan))
        p = p._replace(idx=jax.lax.with_sharding_constraint(p.idx, rows),
                       codes=jax.lax.with_sharding_constraint(p.codes, rows))
    return p, new_e


def flat_chunk_spec(plan: ShardPlan) -> P:
    """Spec of a 2-D tensor's canonical [*batch, Y*X, k] payload arrays: the chunk axis over
    every mesh axis that shards the tensor dims."""
    batch = tuple(plan.spec)[: plan.batch_ndim]
    return P(*batch, plan.tensor_axes or None, None)


def place_payloads(payloads: Sequence[TensorPayload], shape, *, plan: ShardPlan, mesh: Mesh):
    """Stack (padded to a peer bucket) and place peers' payloads as sharded [R, *b, Y, X, k]
    blocks. Returns (placed TensorPayload, valid_R mask)."""
    stacked, valid_R = stack_peers(payloads)
    shape = tuple(int(s) for s in shape)
    grid = tuple(d // t for d, t in zip(shape[plan.batch_ndim:], plan.local_geom.tile))
    block = (len(valid_R),) + shape[: plan.batch_ndim] + grid + (plan.local_geom.k,)
    stacked = _grid_blocks(stacked, block)
    placed = [jax.device_put(a, NamedSharding(mesh, s))
              for a, s in zip(stacked, _payload_specs(plan, True))]
    return TensorPayload(*placed), valid_R


def aggregate_on_shards(core: Callable, placed: TensorPayload, valid_R, *, plan: ShardPlan,
                        mesh: Mesh, rule: str, check_vma: bool = True):
    """`core(flat_R, valid_R, geom=..., rule=..., axis_names=...)` (an aggregation core: pure or
    Pallas) on each device's blocks of `place_payloads`' output; the update is born with the
    parameter's sharding."""
    geom = plan.local_geom

    def local(p, valid):
        batch_shape = p.shift.shape[1:]
        flat_R = jax.vmap(lambda q: flat_payload(q, batch_shape))(p)
        dense = core(flat_R, valid, geom=geom, rule=rule, axis_names=plan.tensor_axes)
        return dense.reshape(batch_shape + tuple(g * t for g, t in zip(geom.grid, geom.tile)))

    return jax.shard_map(local, mesh=mesh, in_specs=(_payload_specs(plan, True), P()),
                         out_specs=plan.spec, check_vma=check_vma)(placed, valid_R)


def plan_for(name: str, x: Any, shape, batch_ndim: int, *, mesh: Mesh | None,
             param_specs: Mapping[str, Any] | None, chunk: int, topk: int = 64,
             ) -> ShardPlan | None:
    """The ShardPlan of parameter `name` (`x`: its array, for the sharding) or None: no mesh, no
    spec, or shards that split chunks."""
    if mesh is None:
        return None
    spec = param_spec(name, x, mesh, param_specs)
    if spec is None:
        return None
    return plan_shards(shape, spec, mesh, batch_ndim, chunk=chunk, topk=topk)

