"""SPEC 2.4 aggregation of peers' payloads into a dense update, and single-peer densify.

Production rule "median_clip": per reference tensor, dequantize each peer's values, clip each
peer to the lower median of the peers' L2 norms (v * min(1, m / (n + 1e-8))), scatter with a
per-coordinate mean over the peers that selected the coordinate, un-chunk; a non-finite result
zeroes (skips) that reference tensor. Rule "mean" is the paper's plain 1/R average (no clip).
Payload arrays may be NumPy arrays straight from the wire decoder.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.chunking import from_chunks
from templar_jax.sparseloco.compress import decode_values, tensor_geometry
from templar_jax.sparseloco.impl import IMPLS, resolve_impl
from templar_jax.sparseloco.payload import Payload, TensorPayload
from templar_jax.sparseloco.tree import batch_dims_from_names, flatten, unflatten

RULES = ("median_clip", "mean")
CLIP_EPS = 1e-8


class AggregationError(ValueError):
    """Bad aggregation input (unknown rule, no peers, payload/parameter mismatch)."""


def _lower_median(norms_RxB, n_valid=None):
    """Lower median over the first axis; with `n_valid`, over the peers whose norms are finite
    placeholders sorted last (padding rows carry +inf)."""
    r = norms_RxB.shape[0]
    if n_valid is None:
        return jnp.sort(norms_RxB, axis=0)[(r - 1) // 2]
    return jnp.take(jnp.sort(norms_RxB, axis=0), (n_valid - 1) // 2, axis=0)


def peer_bucket(r: int) -> int:
    """Peers are padded to the next power of two so the compiled aggregation is reused as the
    number of valid peers changes from window to window."""
    return 1 << max(0, r - 1).bit_length()


def _stack(payloads: Sequence[TensorPayload], pad_to: int | None = None) -> TensorPayload:
    """Stack R payloads on a new leading axis (host-side; NumPy or jax arrays), zero-padded to
    `pad_to` peers."""
    fields = []
    for f in TensorPayload._fields:
        arr = np.stack([np.asarray(getattr(p, f)) for p in payloads])
        if pad_to is not None and pad_to > arr.shape[0]:
            pad = np.zeros((pad_to - arr.shape[0],) + arr.shape[1:], arr.dtype)
            arr = np.concatenate([arr, pad])
        fields.append(arr)
    return TensorPayload(*fields)


def peers_upto(valid_R):
    """1 + the index of the last valid peer (0 if none): loops over peers stop there, so the
    padding after the real peers costs nothing."""
    return jnp.max(jnp.where(valid_R > 0, jnp.arange(1, valid_R.shape[0] + 1), 0))


def _peer_sums(zeros_BxCxS, idx_RxBxCxK, vals_RxBxCxK, ordered_upto=None):
    """zeros + every peer's values scattered in (duplicates accumulate in peer order 0..R-1 on
    CPU). Default: one scatter with the peers on the K axis ([B, C, R*K]); a GPU's scatter-add
    then adds colliding peers with atomics, in any order. With `ordered_upto` (a traced peer
    count): one scatter per peer 0..ordered_upto-1, each with unique indices, so the order is
    fixed on every device (a candidate for deterministic GPU aggregation, bench/compress.py)."""
    r, b, c, k = idx_RxBxCxK.shape
    if ordered_upto is None:
        idx = jnp.moveaxis(idx_RxBxCxK, 0, 2).reshape(b, c, r * k)
        return codec.scatter_add(zeros_BxCxS, idx, jnp.moveaxis(vals_RxBxCxK, 0, 2).reshape(b, c, r * k))

    def add_peer(i, acc):
        return codec.scatter_add(acc, idx_RxBxCxK[i], vals_RxBxCxK[i], unique_indices=True)

    return jax.lax.fori_loop(0, ordered_upto, add_peer, zeros_BxCxS)


def aggregate_chunks(idx_RxBxCxK, vals_RxBxCxK, valid_R, *, chunk_size: int, rule: str,
                     axis_names: Sequence[str] = (), ordered: bool = False):
    """SPEC 2.4 on chunked, decoded peer values -> dense chunks [B, C, chunk_size].

    Padding peers (valid_R == 0) contribute nothing. Under shard_map, `axis_names` completes the
    per-peer norms and the non-finite check across the shards of one reference tensor.
    A reference tensor whose result has any non-finite value comes back as zeros (skipped).
    `ordered`: add the peers one scatter at a time up to the last valid one (`_peer_sums`).
    """
    r, b, c, k = idx_RxBxCxK.shape
    valid_R = valid_R.astype(jnp.float32)
    n_valid = jnp.sum(valid_R).astype(jnp.int32)
    upto = peers_upto(valid_R) if ordered else None  # ordered: stop after the last valid peer
    # Padding peers' entries point past the chunk, so every scatter drops them (mode="drop"),
    # whatever values they hold: no +0.0 adds (on a GPU, atomics piling onto one address per
    # chunk) and no NaN from an invalid peer; the median below skips their norms.
    idx_RxBxCxK = jnp.where(valid_R[:, None, None, None] > 0, idx_RxBxCxK, chunk_size)
    zeros = jnp.zeros((b, c, chunk_size), jnp.float32)
    if rule == "mean":
        dense = _peer_sums(zeros, idx_RxBxCxK, vals_RxBxCxK, upto) / n_valid.astype(jnp.float32)
    else:
        norms_RxB = jnp.sqrt(jax.vmap(lambda v: codec.sumsq(v, axis_names))(vals_RxBxCxK))
        m_B = _lower_median(jnp.where(valid_R[:, None] > 0, norms_RxB, jnp.inf), n_valid)
        factor_RxB = jnp.minimum(1.0, m_B / (norms_RxB + CLIP_EPS))
        ones = jnp.ones(vals_RxBxCxK.shape, jnp.float32)
        sums = _peer_sums(zeros, idx_RxBxCxK, vals_RxBxCxK * factor_RxB[:, :, None, None], upto)
        counts = _peer_sums(zeros, idx_RxBxCxK, ones, upto)
        dense = jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), 0.0)
    bad_B = jnp.sum(~jnp.isfinite(dense), axis=(1, 2), dtype=jnp.float32)
    bad_B = jax.lax.psum(bad_B, tuple(axis_names)) if axis_names else bad_B
    return jnp.where((bad_B == 0)[:, None, None], dense, 0.0)


@partial(jax.jit, static_argnames=("shape", "batch_ndim", "chunk", "rule", "ordered"))
def _aggregate_stacked(stacked: TensorPayload, valid_R, *, shape, batch_ndim, chunk, rule,
                       ordered=False):
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    idx_RxBxCxK, vals_RxBxCxK = jax.vmap(lambda p: decode_values(p, batch_shape))(stacked)
    dense = aggregate_chunks(idx_RxBxCxK, vals_RxBxCxK, valid_R, chunk_size=geom.chunk_size,
                             rule=rule, ordered=ordered)
    return from_chunks(dense, geom).reshape(shape)


def _finite_or_zero(dense_BxT, shape):
    ok_B = jnp.all(jnp.isfinite(dense_BxT.reshape(dense_BxT.shape[0], -1)), axis=1)
    out = jnp.where(ok_B.reshape((-1,) + (1,) * (dense_BxT.ndim - 1)), dense_BxT, 0.0)
    return out.reshape(shape)


def aggregate_tensor(payloads: Sequence[TensorPayload], shape, *, rule: str = "median_clip",
                     chunk: int = 64, batch_ndim: int = 0):
    """Dense float32 update of `shape` from R peers' payloads of one parameter (SPEC 2.4)."""
    if rule not in RULES:
        raise AggregationError(f"unknown aggregation rule {rule!r}; expected one of {RULES}")
    if not payloads:
        raise AggregationError("aggregate_tensor needs at least one payload")
    shape = tuple(int(s) for s in shape)
    padded = peer_bucket(len(payloads))
    valid_R = np.arange(padded) < len(payloads)
    return _aggregate_stacked(_stack(payloads, pad_to=padded), valid_R, shape=shape,
                              batch_ndim=batch_ndim, chunk=chunk, rule=rule)


def _flat_shapes(params_like: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    flat = flatten(params_like)
    return {n: tuple(int(s) for s in (v if isinstance(v, tuple) else getattr(v, "shape", None)
                                       or np.shape(v)))
            for n, v in flat.items()}


def aggregate(payloads: Sequence[Payload], params_like: Mapping[str, Any], *,
              rule: str = "median_clip", chunk: int = 64,
              batch_dims: Mapping[str, int] | None = None, mesh=None,
              param_specs: Mapping[str, Any] | None = None, impl: str = "jax") -> dict[str, Any]:
    """Dense update tree (nested like `params_like`) from R peers' whole payloads.

    `params_like` gives each parameter's shape (arrays, ShapeDtypeStructs or shape tuples).
    Parameters missing from every payload get zeros; a payload lacking a parameter that others
    carry is an error (the wire decoder checks completeness before this runs).
    With `mesh` (specs from `param_specs` {flat_name: PartitionSpec} or from `params_like`'s
    NamedShardings), parameters whose shards hold whole chunks are aggregated per shard and
    come back sharded like the parameter (`sharded_aggregate.py`).
    `impl`: "jax" (default), "pallas" (sparseloco/kernels; bit-identical results on CPU) or
    "auto" (sparseloco/impl.py).
    """
    one, sharded = _aggregate_fns(impl)
    shapes = _flat_shapes(params_like)
    flat_like = flatten(params_like)
    batch_dims = dict(batch_dims) if batch_dims is not None else batch_dims_from_names(shapes)
    if not payloads:
        raise AggregationError("aggregate needs at least one peer payload")
    out = {}
    for name, shape in shapes.items():
        missing = [i for i, p in enumerate(payloads) if name not in p]
        if len(missing) == len(payloads):
            out[name] = jnp.zeros(shape, jnp.float32)
            continue
        if missing:
            raise AggregationError(f"peer payload(s) {missing} lack parameter {name}")
        peers = [p[name] for p in payloads]
        bd = batch_dims.get(name, 0)
        plan = _plan(name, shape, bd, flat_like, mesh, param_specs, chunk) if mesh else None
        if plan is not None:
            out[name] = sharded(peers, shape, plan=plan, mesh=mesh, rule=rule)
        else:
            out[name] = one(peers, shape, rule=rule, chunk=chunk, batch_ndim=bd)
    return unflatten(out)


def _aggregate_fns(impl: str):
    """(unsharded, sharded) per-tensor aggregation: pure JAX or the Pallas kernels ("auto":
    pure JAX, the faster on every device measured; sparseloco/impl.py)."""
    resolved = resolve_impl(impl, "aggregate")
    if resolved is None:
        raise AggregationError(f"unknown aggregation implementation {impl!r}; expected one of {IMPLS}")
    if resolved == "pallas":
        from templar_jax.sparseloco.kernels import aggregate_tensor_pallas, aggregate_tensor_sharded_pallas

        return aggregate_tensor_pallas, aggregate_tensor_sharded_pallas
    from templar_jax.sparseloco.sharded_aggregate import aggregate_tensor_sharded

    return aggregate_tensor, aggregate_tensor_sharded


def _plan(name, shape, batch_ndim, flat_like, mesh, param_specs, chunk):
    from jax.sharding import NamedSharding

    from templar_jax.sparseloco.sharded import plan_shards

    spec = (param_specs or {}).get(name)
    if spec is None:
        sharding = getattr(flat_like.get(name), "sharding", None)
        spec = sharding.spec if isinstance(sharding, NamedSharding) else None
    return None if spec is None else plan_shards(shape, spec, mesh, batch_ndim, chunk=chunk)


def payload_norms(payload: Payload) -> dict[str, Any]:
    """{name: L2 norm of the dequantized values, per reference tensor ([*batch] float32)}."""
    out = {}
    for name, p in payload.items():
        batch_shape = tuple(np.shape(p.shift))
        _, vals = decode_values(p, batch_shape)
        out[name] = jnp.sqrt(jnp.sum(vals * vals, axis=(1, 2))).reshape(batch_shape)
    return out


def median_norms(payloads: Sequence[Payload]) -> dict[str, Any]:
    """{name: lower median over peers of `payload_norms`} (the clip threshold of SPEC 2.4)."""
    if not payloads:
        raise AggregationError("median_norms needs at least one payload")
    norms = [payload_norms(p) for p in payloads]
    return {name: _lower_median(jnp.stack([n[name] for n in norms])) for name in norms[0]}


@partial(jax.jit, static_argnames=("shape", "batch_ndim", "chunk"))
def _densify_one(p: TensorPayload, clip, *, shape, batch_ndim, chunk):
    batch_shape, geom = tensor_geometry(shape, batch_ndim, chunk=chunk)
    idx, vals = decode_values(p, batch_shape)
    if clip is not None:
        norm_B = jnp.sqrt(jnp.sum(vals * vals, axis=(1, 2)))
        factor_B = jnp.minimum(1.0, jnp.asarray(clip, jnp.float32).reshape(-1) / (norm_B + CLIP_EPS))
        vals = vals * factor_B[:, None, None]
    zeros = jnp.zeros((idx.shape[0], geom.num_chunks, geom.chunk_size), jnp.float32)
    return _finite_or_zero(from_chunks(codec.scatter_add(zeros, idx, vals), geom), shape)


def densify(payload: Payload, params_like: Mapping[str, Any], *,
            clip_norm: Mapping[str, Any] | None = None, chunk: int = 64,
            batch_dims: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One miner's dense update (nested like `params_like`), optionally norm-clipped.

    `clip_norm` maps names to the per-reference-tensor threshold (e.g. `median_norms` of all the
    window's peers), so the validator's LossScore sees the update as SPEC 2.4 would weigh it.
    """
    shapes = _flat_shapes(params_like)
    batch_dims = dict(batch_dims) if batch_dims is not None else batch_dims_from_names(shapes)
    out = {}
    for name, shape in shapes.items():
        if name not in payload:
            out[name] = jnp.zeros(shape, jnp.float32)
            continue
        clip = None if clip_norm is None else clip_norm[name]
        out[name] = _densify_one(payload[name], clip, shape=shape,
                                 batch_ndim=batch_dims.get(name, 0), chunk=chunk)
    return unflatten(out)
