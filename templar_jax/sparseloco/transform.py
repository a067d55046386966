"""SparseLoCo's compression as a transformation whose update is a payload, plus the outer step.

    e_t      = beta * e_{t-1} + delta_t              (delta = theta0 - theta_H, the pseudo-grad)
    payload  = Q_2bit(TopK_chunk(e_t))               (SPEC 2.1-2.3, per reference tensor)
    e_t     <- e_t - decode(payload)                 (residual keeps what was not sent)
    agg      = Aggregate(payloads of the peers)      (SPEC 2.4, `aggregate`)
    theta    = theta0 - alpha * agg                  (`outer_step`: optax.sgd(alpha))

`sparseloco(...)` follows optax's shape (`init(params) -> state`, `update(updates, state,
params=None) -> (out, state)`, NamedTuple state) but is not an optax GradientTransformation:
its update returns a flat `Payload` {name: TensorPayload} to send to the peers, not a gradient
tree, so it does not chain with optax transformations. The outer optimizer (`outer_optimizer`)
is a real optax one and is applied to the aggregate.

Example::

    tx = sparseloco(beta=0.95, topk=64, chunk=64)
    state = tx.init(params)
    payload, state = tx.update(pseudo_grad, state)          # flat {name: TensorPayload}
    agg = aggregate([payload, *peer_payloads], params)       # dense tree like params
    params = outer_step(params, agg, alpha=1.0)

With `mesh` (and optionally `param_specs`; otherwise read from the state's NamedShardings),
tensors whose shards hold whole chunks are compressed under `shard_map` on local shards.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding

from templar_jax.sparseloco.compress import null_payload
from templar_jax.sparseloco.dispatch import compress_core, needs_vma_check, resolve_impl
from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.kernels.config import KernelConfig
from templar_jax.sparseloco.payload import Payload
from templar_jax.sparseloco.sharded import compress_on_shards, param_spec, plan_shards
from templar_jax.sparseloco.tree import batch_dims_from_names, flatten, restructure

log = logging.getLogger(__name__)


class SparseLoCoState(NamedTuple):
    error: Any  # error-feedback buffers, a tree like params (same shapes, dtypes, shardings)


class PayloadTransformation(NamedTuple):
    """optax-shaped pair whose update emits the payload instead of an update tree:
    init(params) -> SparseLoCoState;
    update(pseudo_grad, state, params=None, *, null_round=False) -> (Payload, SparseLoCoState).
    """
    init: Callable[[Any], SparseLoCoState]
    update: Callable[..., tuple[Payload, SparseLoCoState]]


def _zeros_like_tree(params):
    def zeros(p):
        sharding = getattr(p, "sharding", None)
        if isinstance(sharding, NamedSharding):
            return jax.jit(jnp.zeros_like, out_shardings=sharding)(p)
        return jnp.zeros(jnp.shape(p), p.dtype)
    return jax.tree.map(zeros, params)


@functools.lru_cache(maxsize=64)
def _compiled_update(names, metas, beta, bins, sigma_range, mesh, impl, kernel):
    """One jitted EF+compress over all tensors; shared by equal-config transformations (the
    KernelConfig is part of the key, so a changed option compiles anew)."""
    plans = dict(zip(names, metas))
    core = compress_core(impl, kernel)
    check_vma = needs_vma_check(impl, "compress")

    def run(flat_e, flat_delta):
        payload, new_e = {}, {}
        for name in names:
            plan, geom = plans[name]
            kw = dict(beta=beta, bins=bins, sigma_range=sigma_range)
            if plan is not None:
                payload[name], new_e[name] = compress_on_shards(
                    core, flat_e[name], flat_delta[name], plan=plan, mesh=mesh,
                    check_vma=check_vma, **kw)
            else:
                payload[name], new_e[name] = core(flat_e[name], flat_delta[name], geom=geom, **kw)
        return payload, new_e

    return jax.jit(run)


def sparseloco(beta: float = 0.95, topk: int = 64, chunk: int = 64, *, bins: int = 4,
               sigma_range: float = 6.0, batch_dims: Mapping[str, int] | None = None,
               mesh: Mesh | None = None,
               param_specs: Mapping[str, Any] | None = None,
               impl: str = "jax", kernel: KernelConfig = KernelConfig(),
               ) -> PayloadTransformation:
    """Error feedback + chunked top-k + 2-bit quantization (see module docstring).

    Args:
      beta: error-feedback decay (0.95 in production; no learning-rate factor).
      topk, chunk: values kept per chunk and the tile edge of SPEC 2.1 (64 and 64).
      bins, sigma_range: quantizer levels and range (4 and 6.0).
      batch_dims: {flat_name: number of leading stacked dims}; default: 1 for "layers/..." names.
      mesh, param_specs: enable per-shard compression ({flat_name: PartitionSpec}, optional).
      impl: "jax" (default), "pallas" (the kernels of sparseloco/kernels; bit-identical) or
        "auto" (the kernel where it was measured faster: GPUs; dispatch.py).
      kernel: which kernel variant "pallas" runs (`KernelConfig`, run config
        `sparseloco.kernel`; its `auto` fields resolve to kernels/tuned.py on GPUs).
    update(pseudo_grad, state, params=None, *, null_round=False) returns (flat Payload, state).
    A null round returns payloads that decode to zeros and resets the error feedback to zero.
    """
    impl = resolve_impl(impl, "compress")  # validate early
    if impl == "pallas" and kernel.unmeasured():
        log.info("kernel options %s are exact but not yet timed on a device",
                 ", ".join(kernel.unmeasured()))

    def init_fn(params):
        return SparseLoCoState(error=_zeros_like_tree(params))

    def plan_key(flat_e):
        dims = dict(batch_dims) if batch_dims is not None else batch_dims_from_names(flat_e)
        names = tuple(sorted(flat_e))
        metas = []
        for name in names:
            x = flat_e[name]
            _, geom = tensor_geometry(x.shape, dims.get(name, 0), chunk=chunk, topk=topk)
            spec = param_spec(name, x, mesh, param_specs) if mesh is not None else None
            plan = None
            if spec is not None:
                plan = plan_shards(x.shape, spec, mesh, dims.get(name, 0), chunk=chunk, topk=topk)
                if plan is None:
                    log.warning("%s %s: shards do not hold whole chunks; compressing unsharded",
                                name, x.shape)
            metas.append((plan, geom))
        return names, tuple(metas), dims

    def update_fn(updates, state, params=None, *, null_round: bool = False):
        del params
        flat_e, flat_delta = flatten(state.error), flatten(updates)
        if set(flat_e) != set(flat_delta):
            raise ValueError("pseudo-gradient tree does not match the error-feedback tree: "
                             f"{sorted(set(flat_e) ^ set(flat_delta))}")
        names, metas, dims = plan_key(flat_e)
        if null_round:
            payload = {n: null_payload(flat_e[n].shape, dims.get(n, 0), chunk=chunk, topk=topk)
                       for n in names}
            return payload, SparseLoCoState(error=_zeros_like_tree(state.error))
        fn = _compiled_update(names, metas, float(beta), bins, float(sigma_range), mesh, impl,
                              kernel)
        payload, new_e = fn(flat_e, flat_delta)
        return payload, SparseLoCoState(error=restructure(state.error, new_e))

    return PayloadTransformation(init_fn, update_fn)


def outer_optimizer(alpha: float) -> optax.GradientTransformation:
    """The outer optimizer of SPEC 2: plain SGD (no momentum) on the aggregated update."""
    return optax.sgd(alpha)


@functools.partial(jax.jit, static_argnames=("alpha",))
def outer_step(params, agg, alpha: float):
    """theta_next = theta0 - alpha * agg, via optax.sgd(alpha) (stateless; dtype preserved)."""
    opt = outer_optimizer(alpha)
    updates, _ = opt.update(agg, opt.init(params), params)
    return jax.tree.map(lambda p, u: (p + u.astype(p.dtype)).astype(p.dtype), params, updates)


def payload_bytes_reference(payload: Payload) -> int:
    """Bytes the reference wire format needs (SPEC 2.5): 12-bit indices, one byte per code,
    24 bytes of quantizer side data per reference tensor."""
    total = 0
    for p in payload.values():
        n = int(jnp.size(p.idx))
        total += (n * 12 + 7) // 8 + n + 24 * int(jnp.size(p.shift))
    return total

