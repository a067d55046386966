"""SPEC 2.4 aggregation one peer at a time: the same dense update as `aggregate.aggregate`
(bit-identical on CPU, tests/test_sparseloco_streamed.py) without ever stacking the peers.

`aggregate` stacks every peer's slice of a tensor (padded to the peer bucket) in one program, so
its temporaries grow with the number of peers (at 1B, ~6 GB for the largest tensor with 20
peers). Here each tensor takes two passes over the peers, reading `payloads[r][name]` once per
pass (a `SpooledPayload` decodes it from disk on each read):
  1. the norms: every peer's codes, shift and lut (a fifth of a decoded payload: the int32
     indices are dropped) stacked and padded to the peer bucket, and the stacked core's own norm
     expression run on them. Per peer it cannot be: XLA's summation order, so a norm's last
     bits, changes with the stacked shape (measured: the same peer's norm differs between
     buckets 1, 2, 8 and 32), and the median clip needs every norm before any clipping. Then
     the clip factors and valid peers exactly as the stacked core computes them
     (`rules.finite_peers`, `rules.clip_factors`);
  2. each peer's values, clipped, scattered into a running sum (and a count) in chunk layout,
     starting from +0.0, peers in order 0..R-1: per coordinate the same float adds in the same
     order as the stacked core's one scatter (peers laid out peer-major on its K axis), whose
     CPU scatter adds duplicates in update order;
then the rule's normalization (`rules.finish_sums`, the stacked core's own). So a tensor holds
its accumulators (sum and count: two tensor-sized float32 arrays, donated from step to step)
and one peer's payload, whatever the number of peers; only the norm pass's temporaries grow
with the peers (per bucket slot, the tensor's float32 bytes / 64 in values and a quarter of that
in codes). Only the pure-JAX core streams (a GPU's stacked scatter adds colliding peers with
atomics in any order; this adds them in peer order, as the Pallas kernel and the `ordered` core
do). With a mesh, a tensor whose shards hold whole
chunks is accumulated per shard (`sharded.plan_for`), each device keeping its own chunks.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.aggregate import per_parameter
from templar_jax.sparseloco.chunking import from_chunks
from templar_jax.sparseloco.geometry import ChunkGeometry, flat_batch, tensor_geometry
from templar_jax.sparseloco.payload import Payload, TensorPayload, flat_payload, stack_peers
from templar_jax.sparseloco.rules import (
    AggregationError, add_one_peer, check_rule, finish_sums, peer_factors, peer_norms)
from templar_jax.sparseloco.sharded import ShardPlan, place_payloads


# -- one device ---------------------------------------------------------------------------------
@partial(jax.jit, static_argnames=("batch_shape",))
def _stacked_values(stacked: TensorPayload, *, batch_shape):
    flat_R = jax.vmap(lambda p: flat_payload(p, batch_shape))(stacked)
    return jax.vmap(codec.dequantize)(flat_R.codes, flat_R.shift, flat_R.lut)


def _norms(stacked: TensorPayload, *, batch_shape):
    """The peers' norms [R, B]. Two programs, so the decoded values reach the reduction as a
    materialized array, as in the stacked core (where they also feed the scatter): fused into
    the reduction instead, XLA's CPU reduction (a YNNPACK fusion) sums in another order
    (measured: a norm 1 ulp off at the 150m preset's w_gate, so the clipped peers' values were)."""
    return _peer_norms(_stacked_values(stacked, batch_shape=batch_shape))


_peer_norms = jax.jit(peer_norms)


@partial(jax.jit, static_argnames=("batch_shape", "chunk_size", "rule"), donate_argnums=(0, 1))
def _add(sums, counts, p: TensorPayload, factor_B, valid_B, *, batch_shape, chunk_size: int,
         rule: str):
    return add_one_peer(sums, counts, flat_payload(p, batch_shape), factor_B, valid_B,
                        chunk_size=chunk_size, rule=rule)


@partial(jax.jit, static_argnames=("geom", "shape", "rule"))
def _finish(sums, counts, n_valid_B, *, geom: ChunkGeometry, shape, rule: str):
    return from_chunks(finish_sums(sums, counts, n_valid_B, rule=rule), geom).reshape(shape)


# -- per shard (the accumulators are arrays of the parameter's shape and sharding whose local
# blocks hold that device's [B, C, S] chunks: a reshape of the block, never a transpose) ---------
def _batch_spec(plan: ShardPlan) -> P:
    return P(*tuple(plan.spec)[: plan.batch_ndim])


def _local_flat(p: TensorPayload) -> TensorPayload:
    """The one placed peer's local blocks ([1, *b, Y, X, k]) as flat payload arrays."""
    return flat_payload(jax.tree.map(lambda a: a[0], p), p.shift.shape[1:])


def _chunks(block, geom: ChunkGeometry, b: int):
    return block.reshape(b, geom.num_chunks, geom.chunk_size)


@partial(jax.jit, static_argnames=("mesh", "specs"))
def _values_on_shards(placed: TensorPayload, *, mesh: Mesh, specs):
    def local(p):
        batch_shape = p.shift.shape[1:]
        flat_R = jax.vmap(lambda q: flat_payload(q, batch_shape))(p)
        vals = jax.vmap(codec.dequantize)(flat_R.codes, flat_R.shift, flat_R.lut)
        return vals.reshape(p.codes.shape)

    return jax.shard_map(local, mesh=mesh, in_specs=(specs,), out_specs=specs.codes)(placed)


@partial(jax.jit, static_argnames=("plan", "mesh", "spec"))
def _norms_of_values_on_shards(vals, *, plan: ShardPlan, mesh: Mesh, spec):
    def local(v):
        batch_shape = v.shape[1: 1 + plan.batch_ndim]
        v = v.reshape(v.shape[0], flat_batch(batch_shape), -1, v.shape[-1])
        return peer_norms(v, plan.tensor_axes).reshape((-1,) + batch_shape)

    return jax.shard_map(local, mesh=mesh, in_specs=(spec,),
                         out_specs=P(None, *tuple(_batch_spec(plan))))(vals)


def _norms_on_shards(placed: TensorPayload, *, plan: ShardPlan, mesh: Mesh, specs):
    """`_norms` per shard: the same two programs."""
    vals = _values_on_shards(placed, mesh=mesh, specs=specs)
    return _norms_of_values_on_shards(vals, plan=plan, mesh=mesh, spec=specs.codes)


@partial(jax.jit, static_argnames=("plan", "mesh", "specs", "rule"), donate_argnums=(0, 1))
def _add_on_shards(sums, counts, placed: TensorPayload, factor, valid, *, plan: ShardPlan,
                   mesh: Mesh, specs, rule: str):
    geom, bspec = plan.local_geom, _batch_spec(plan)

    def local(s, c, p, f, v):
        b = flat_batch(p.shift.shape[1:])
        s2, c2 = add_one_peer(_chunks(s, geom, b), None if c is None else _chunks(c, geom, b),
                              _local_flat(p), f.reshape(b), v.reshape(b),
                              chunk_size=geom.chunk_size, rule=rule)
        return s2.reshape(s.shape), None if c2 is None else c2.reshape(c.shape)

    return jax.shard_map(local, mesh=mesh, in_specs=(plan.spec, plan.spec, specs, bspec, bspec),
                         out_specs=(plan.spec, plan.spec))(sums, counts, placed, factor, valid)


@partial(jax.jit, static_argnames=("plan", "mesh", "rule"))
def _finish_on_shards(sums, counts, n_valid, *, plan: ShardPlan, mesh: Mesh, rule: str):
    geom = plan.local_geom

    def local(s, c, n):
        b = flat_batch(n.shape)
        dense = finish_sums(_chunks(s, geom, b), None if c is None else _chunks(c, geom, b),
                            n.reshape(b), rule=rule, axis_names=plan.tensor_axes)
        return from_chunks(dense, geom).reshape(s.shape)

    return jax.shard_map(local, mesh=mesh, in_specs=(plan.spec, plan.spec, _batch_spec(plan)),
                         out_specs=plan.spec)(sums, counts, n_valid)


# -- one tensor, then the tree -------------------------------------------------------------------
def _norm_inputs(tp: TensorPayload) -> TensorPayload:
    """What the norms read of a peer's payload: its codes, shift and lut (its int32 indices are
    not kept; the codes stand in for them, unread)."""
    codes = np.asarray(tp.codes)
    return TensorPayload(codes, codes, np.asarray(tp.shift), np.asarray(tp.scale), np.asarray(tp.lut))


def aggregate_tensor_streamed(payloads: Sequence[Mapping[str, TensorPayload]], name: str, shape,
                              *, rule: str = "median_clip", chunk: int = 64, batch_ndim: int = 0,
                              plan: ShardPlan | None = None, mesh: Mesh | None = None):
    """Dense float32 update of parameter `name` (`shape`) from the peers' payloads, reading
    `payloads[r][name]` twice per peer, one peer at a time. With `plan` and `mesh` the update is
    accumulated per shard and born with the parameter's sharding."""
    shape = tuple(int(s) for s in shape)
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    sharded = plan is not None

    def placed(r):
        p = payloads[r][name]
        return place_payloads([p], shape, plan=plan, mesh=mesh)[0] if sharded else p

    def specs(p):
        return TensorPayload(*(a.sharding.spec for a in p))

    # pass 1: every peer's norms in one program of the stacked core's shape (padded to the peer
    # bucket): XLA's reduction order, so a norm's last bits, depends on that shape
    inputs = [_norm_inputs(payloads[r][name]) for r in range(len(payloads))]
    if sharded:
        stacked, _ = place_payloads(inputs, shape, plan=plan, mesh=mesh)
        norms_RxB = _norms_on_shards(stacked, plan=plan, mesh=mesh, specs=specs(stacked))
        norms_RxB = norms_RxB.reshape(norms_RxB.shape[0], -1)
    else:
        stacked, _ = stack_peers(inputs)
        norms_RxB = _norms(stacked, batch_shape=batch_shape)
    del inputs, stacked
    factor_RxB, valid_RxB, n_valid_B = peer_factors(norms_RxB, jnp.arange(norms_RxB.shape[0]) < len(payloads),
                                                    rule)  # rows past the peers are the padding
    if sharded:
        sharding = jax.sharding.NamedSharding(mesh, plan.spec)
        sums = jnp.zeros(shape, jnp.float32, device=sharding)
        counts = None if rule == "mean" else jnp.zeros(shape, jnp.float32, device=sharding)
        bshard = jax.sharding.NamedSharding(mesh, _batch_spec(plan))

        def per_batch(x_B):
            return jax.device_put(x_B.reshape(batch_shape), bshard)
    else:
        acc_shape = (flat_batch(batch_shape), geom.num_chunks, geom.chunk_size)
        sums = jnp.zeros(acc_shape, jnp.float32)
        counts = None if rule == "mean" else jnp.zeros(acc_shape, jnp.float32)
    for r in range(len(payloads)):
        p = placed(r)
        if sharded:
            sums, counts = _add_on_shards(sums, counts, p, per_batch(factor_RxB[r]),
                                          per_batch(valid_RxB[r]), plan=plan, mesh=mesh,
                                          specs=specs(p), rule=rule)
        else:
            sums, counts = _add(sums, counts, p, factor_RxB[r], valid_RxB[r],
                                batch_shape=batch_shape, chunk_size=geom.chunk_size, rule=rule)
        del p  # before the next peer's is read
    if sharded:
        return _finish_on_shards(sums, counts, per_batch(n_valid_B), plan=plan, mesh=mesh,
                                 rule=rule)
    return _finish(sums, counts, n_valid_B, geom=geom, shape=shape, rule=rule)


def aggregate_streamed(payloads: Sequence[Payload], params_like: Mapping[str, Any], *,
                       rule: str = "median_clip", chunk: int = 64,
                       batch_dims: Mapping[str, int] | None = None, mesh: Mesh | None = None,
                       param_specs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`aggregate.aggregate` (same arguments but the core: always pure JAX, peers in order) one
    peer at a time: peak memory is the result, one tensor's accumulators and one peer's payload
    of it, whatever the number of peers. `payloads` may be lazy mappings (`SpooledPayload`)."""
    check_rule(rule)
    if not payloads:
        raise AggregationError("aggregate_streamed needs at least one payload")
    return per_parameter(
        payloads, params_like,
        lambda name, shape, bd, plan: aggregate_tensor_streamed(payloads, name, shape, rule=rule, chunk=chunk,
                                                               batch_ndim=bd, plan=plan, mesh=mesh),
        batch_dims=batch_dims, mesh=mesh, param_specs=param_specs, chunk=chunk)
