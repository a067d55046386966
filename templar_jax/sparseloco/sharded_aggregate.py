"""SPEC 2.4 aggregation straight into sharded parameters (no device holds a full tensor).

Peers' payloads are stacked (padded to a power-of-two peer bucket), laid out as
[R, *batch, Y, X, k] blocks and placed with the parameter's sharding on the chunk-grid dims;
each device decodes, clips and scatter-means only its own chunks. Per-peer norms and the
non-finite check are completed with psums over the mesh axes that shard the tensor dims.
"""

from __future__ import annotations

from functools import partial
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.aggregate import (
    RULES, AggregationError, _stack, aggregate_chunks, peer_bucket)
from templar_jax.sparseloco.chunking import from_chunks
from templar_jax.sparseloco.payload import TensorPayload
from templar_jax.sparseloco.sharded import ShardPlan


def _specs(plan: ShardPlan):
    entries = tuple(plan.spec)
    batch, tensor = entries[: plan.batch_ndim], entries[plan.batch_ndim:]
    block = P(None, *batch, *tensor, None)
    return TensorPayload(block, block, P(None, *batch), P(None, *batch), P(None, *batch, None))


@partial(jax.jit, static_argnames=("plan", "mesh", "rule"))
def _aggregate_blocks(stacked: TensorPayload, valid_R, *, plan: ShardPlan, mesh: Mesh, rule: str):
    geom = plan.local_geom

    def local(p, valid):
        r = p.idx.shape[0]
        batch_shape = p.shift.shape[1:]
        b = int(np.prod(batch_shape)) if batch_shape else 1
        idx = p.idx.reshape(r, b, geom.num_chunks, geom.k).astype(jnp.int32)
        codes = p.codes.reshape(r, b, geom.num_chunks, geom.k)
        vals = jax.vmap(codec.dequantize)(codes, p.shift.reshape(r, b), p.lut.reshape(r, b, -1))
        dense = aggregate_chunks(idx, vals, valid, chunk_size=geom.chunk_size, rule=rule,
                                 axis_names=plan.tensor_axes)
        tensor_local = tuple(g * t for g, t in zip(geom.grid, geom.tile))
        return from_chunks(dense, geom).reshape(batch_shape + tensor_local)

    return jax.shard_map(local, mesh=mesh, in_specs=(_specs(plan), P()),
                         out_specs=plan.spec)(stacked, valid_R)


def place_payloads(payloads: Sequence[TensorPayload], shape, *, plan: ShardPlan, mesh: Mesh):
    """Stack (padded to a peer bucket) and place peers' payloads as sharded [R, *b, Y, X, k]
    blocks. Returns (placed TensorPayload, valid_R mask)."""
    padded = peer_bucket(len(payloads))
    stacked = _stack(payloads, pad_to=padded)
    shape = tuple(int(s) for s in shape)
    grid = tuple(d // t for d, t in zip(shape[plan.batch_ndim:], plan.local_geom.tile))
    block = (padded,) + shape[: plan.batch_ndim] + grid + (plan.local_geom.k,)
    stacked = stacked._replace(idx=stacked.idx.reshape(block), codes=stacked.codes.reshape(block))
    placed = [jax.device_put(a, NamedSharding(mesh, s)) for a, s in zip(stacked, _specs(plan))]
    return TensorPayload(*placed), np.arange(padded) < len(payloads)


def aggregate_tensor_sharded(payloads: Sequence[TensorPayload], shape, *, plan: ShardPlan,
                             mesh: Mesh, rule: str = "median_clip"):
    """Like `aggregate_tensor`, but the result is born with the parameter's sharding."""
    if rule not in RULES:
        raise AggregationError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")
    if not payloads:
        raise AggregationError("aggregate_tensor_sharded needs at least one payload")
    placed, valid_R = place_payloads(payloads, shape, plan=plan, mesh=mesh)
    return _aggregate_blocks(placed, valid_R, plan=plan, mesh=mesh, rule=rule)
