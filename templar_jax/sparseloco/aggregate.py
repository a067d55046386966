"""SPEC 2.4 aggregation of peers' payloads into a dense update (the rule: `rules.py`).

`aggregate` takes whole payloads and returns a tree like the parameters; `aggregate_tensor` /
`aggregate_tensor_sharded` do one parameter, unsharded or per shard. Peers are stacked host-side
and padded to a power-of-two bucket (one compile per bucket); `impl` picks the pure or Pallas
core (`dispatch.py`) and `kernel` (a static argument) the kernel variant. Payload arrays may be
NumPy arrays straight from the wire decoder.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from templar_jax.sparseloco.dispatch import aggregate_core, needs_vma_check, resolve_impl
from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.sparseloco.payload import Payload, TensorPayload, flat_payload, stack_peers
from templar_jax.sparseloco.rules import AggregationError, check_rule
from templar_jax.sparseloco.sharded import ShardPlan, aggregate_on_shards, place_payloads, plan_for
from templar_jax.sparseloco.tree import batch_dims_from_names, flat_shapes, flatten, unflatten


@partial(jax.jit, static_argnames=("shape", "batch_ndim", "chunk", "rule", "impl", "kernel",
                                   "ordered"))
def aggregate_stacked(stacked: TensorPayload, valid_R, *, shape, batch_ndim: int, chunk: int,
                      rule: str, impl: str = "jax", kernel: KernelConfig = KernelConfig(),
                      ordered: bool = False):
    """Dense update of `shape` from peers stacked on a leading axis (`payload.stack_peers`;
    `valid_R` marks the real ones). `ordered`: the pure core adds peers one scatter at a time."""
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    flat_R = jax.vmap(lambda p: flat_payload(p, batch_shape))(stacked)
    core = aggregate_core(impl, kernel, ordered)
    return core(flat_R, valid_R, geom=geom, rule=rule).reshape(shape)


@partial(jax.jit, static_argnames=("plan", "mesh", "rule", "impl", "kernel"))
def aggregate_placed(placed: TensorPayload, valid_R, *, plan: ShardPlan, mesh: Mesh, rule: str,
                     impl: str = "jax", kernel: KernelConfig = KernelConfig()):
    """Dense update sharded like the parameter from `sharded.place_payloads`' blocks."""
    return aggregate_on_shards(aggregate_core(impl, kernel), placed, valid_R, plan=plan,
                               mesh=mesh, rule=rule,
                               check_vma=needs_vma_check(impl, "aggregate"))


def _checked(payloads: Sequence[Any], rule: str, impl: str, who: str) -> str:
    check_rule(rule)
    impl = resolve_impl(impl, "aggregate")
    if not payloads:
        raise AggregationError(f"{who} needs at least one payload")
    return impl


def aggregate_tensor(payloads: Sequence[TensorPayload], shape, *, rule: str = "median_clip",
                     chunk: int = 64, batch_ndim: int = 0, impl: str = "jax",
                     kernel: KernelConfig = KernelConfig()):
    """Dense float32 update of `shape` from R peers' payloads of one parameter (SPEC 2.4)."""
    impl = _checked(payloads, rule, impl, "aggregate_tensor")
    stacked, valid_R = stack_peers(payloads)
    return aggregate_stacked(stacked, valid_R, shape=tuple(int(s) for s in shape),
                             batch_ndim=batch_ndim, chunk=chunk, rule=rule, impl=impl,
                             kernel=kernel)


def aggregate_tensor_sharded(payloads: Sequence[TensorPayload], shape, *, plan: ShardPlan,
                             mesh: Mesh, rule: str = "median_clip", impl: str = "jax",
                             kernel: KernelConfig = KernelConfig()):
    """Like `aggregate_tensor`, but each device aggregates only its own chunks and the result is
    born with the parameter's sharding (no device holds a full tensor)."""
    impl = _checked(payloads, rule, impl, "aggregate_tensor_sharded")
    placed, valid_R = place_payloads(payloads, shape, plan=plan, mesh=mesh)
    return aggregate_placed(placed, valid_R, plan=plan, mesh=mesh, rule=rule, impl=impl,
                            kernel=kernel)


def aggregate(payloads: Sequence[Payload], params_like: Mapping[str, Any], *,
              rule: str = "median_clip", chunk: int = 64,
              batch_dims: Mapping[str, int] | None = None, mesh: Mesh | None = None,
              param_specs: Mapping[str, Any] | None = None, impl: str = "jax",
              kernel: KernelConfig = KernelConfig()) -> dict[str, Any]:
    """Dense update tree (nested like `params_like`) from R peers' whole payloads.

    `params_like` gives each parameter's shape (arrays, ShapeDtypeStructs or shape tuples).
    Parameters missing from every payload get zeros; a payload lacking a parameter that others
    carry is an error (the wire decoder checks completeness before this runs).
    With `mesh` (specs from `param_specs` {flat_name: PartitionSpec} or from `params_like`'s
    NamedShardings), parameters whose shards hold whole chunks are aggregated per shard and
    come back sharded like the parameter.
    `impl`: "jax" (default), "pallas" (bit-identical results on CPU) or "auto" (dispatch.py);
    `kernel`: the kernel variant for "pallas".
    """
    impl = _checked(payloads, rule, impl, "aggregate")

    def one(name, shape, bd, plan):
        peers = [p[name] for p in payloads]
        if plan is not None:
            return aggregate_tensor_sharded(peers, shape, plan=plan, mesh=mesh, rule=rule, impl=impl, kernel=kernel)
        return aggregate_tensor(peers, shape, rule=rule, chunk=chunk, batch_ndim=bd, impl=impl, kernel=kernel)

    return per_parameter(payloads, params_like, one, batch_dims=batch_dims, mesh=mesh, param_specs=param_specs,
                         chunk=chunk)


def per_parameter(payloads: Sequence[Payload], params_like: Mapping[str, Any], one, *,
                  batch_dims: Mapping[str, int] | None, mesh: Mesh | None,
                  param_specs: Mapping[str, Any] | None, chunk: int) -> dict[str, Any]:
    """A tree like `params_like` of one(name, shape, batch_ndim, shard_plan) for each parameter
    the payloads carry; zeros for one that no payload carries; a payload lacking a parameter
    that others carry is an AggregationError. The shard plan is None where the parameter is
    aggregated whole."""
    shapes = flat_shapes(params_like)
    flat_like = flatten(params_like)
    batch_dims = dict(batch_dims) if batch_dims is not None else batch_dims_from_names(shapes)
    out = {}
    for name, shape in shapes.items():
        missing = [i for i, p in enumerate(payloads) if name not in p]
        if len(missing) == len(payloads):
            out[name] = jnp.zeros(shape, jnp.float32)
            continue
        if missing:
            raise AggregationError(f"peer payload(s) {missing} lack parameter {name}")
        bd = batch_dims.get(name, 0)
        plan = plan_for(name, flat_like.get(name), shape, bd, mesh=mesh, param_specs=param_specs, chunk=chunk)
        out[name] = one(name, shape, bd, plan)
    return unflatten(out)
