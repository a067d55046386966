"""One peer's payload as a dense update, and the peers' norms: what the validator scores.

`densify(payload, params_like, clip_norm=median_norms(window_payloads))` is one miner's update
clipped as SPEC 2.4 weighs it inside the aggregate (`rules.py`), so LossScore sees the same
contribution.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco import codec
from templar_jax.sparseloco.chunking import from_chunks
from templar_jax.sparseloco.compress import decode_values
from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.payload import Payload, TensorPayload
from templar_jax.sparseloco.rules import CLIP_EPS, AggregationError, lower_median
from templar_jax.sparseloco.tree import batch_dims_from_names, flat_shapes, unflatten


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
    return {name: lower_median(jnp.stack([n[name] for n in norms])) for name in norms[0]}


def _finite_or_zero(dense_BxT, shape):
    ok_B = jnp.all(jnp.isfinite(dense_BxT.reshape(dense_BxT.shape[0], -1)), axis=1)
    out = jnp.where(ok_B.reshape((-1,) + (1,) * (dense_BxT.ndim - 1)), dense_BxT, 0.0)
    return out.reshape(shape)


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


def densify_tensors(payload: Payload, params_like: Mapping[str, Any], *,
                    clip_norm: Mapping[str, Any] | None = None, chunk: int = 64,
                    batch_dims: Mapping[str, int] | None = None) -> Iterator[tuple[str, Any]]:
    """`densify` one parameter at a time: (flat name, dense update), so a caller that consumes
    each tensor at once (theta0 - step * update) never holds the whole dense update."""
    shapes = flat_shapes(params_like)
    batch_dims = dict(batch_dims) if batch_dims is not None else batch_dims_from_names(shapes)
    for name, shape in shapes.items():
        if name not in payload:
            yield name, jnp.zeros(shape, jnp.float32)
            continue
        clip = None if clip_norm is None else clip_norm[name]
        yield name, _densify_one(payload[name], clip, shape=shape, batch_ndim=batch_dims.get(name, 0), chunk=chunk)


def densify(payload: Payload, params_like: Mapping[str, Any], *,
            clip_norm: Mapping[str, Any] | None = None, chunk: int = 64,
            batch_dims: Mapping[str, int] | None = None) -> dict[str, Any]:
    """One miner's dense update (nested like `params_like`), optionally norm-clipped.

    `clip_norm` maps names to the per-reference-tensor threshold (e.g. `median_norms` of all the
    window's peers), so the validator's LossScore sees the update as SPEC 2.4 would weigh it.
    """
    return unflatten(dict(densify_tensors(payload, params_like, clip_norm=clip_norm, chunk=chunk,
                                          batch_dims=batch_dims)))
