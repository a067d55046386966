"""Functional model API: plain nested dicts of arrays at the boundary.

    params = init_params(cfg, rng, mesh)          # born sharded when mesh is given
    logits_BxLxV = apply(cfg, params, tokens_BxL)  # float32 logits; cfg is jit-static

Shapes, axes and counts come from the parameter table (param_table.py).
Internally the NNX Decoder is rebuilt from a cached graphdef and the pure dict, so `apply`
is a pure function that jit/grad/scan handle like any other.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from templar_jax.model.config import ModelConfig
from templar_jax.model.llama import Decoder
from templar_jax.model.param_table import param_table
from templar_jax.model.sharding import param_shardings
from templar_jax.tree import unflatten_params


@functools.lru_cache(maxsize=32)
def _graphdef(cfg: ModelConfig):
    abstract = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    graphdef, _ = nnx.split(abstract)
    return graphdef


def _to_pure(model: Decoder) -> dict:
    return nnx.to_pure_dict(nnx.state(model, nnx.Param))


def _init_pure(cfg: ModelConfig, rng: jax.Array) -> dict:
    return _to_pure(Decoder(cfg, rngs=nnx.Rngs(params=rng)))


def init_params(cfg: ModelConfig, rng: jax.Array | int = 0, mesh: Mesh | None = None) -> dict:
    """Fresh parameters. With a mesh, every array is created directly in its sharding."""
    if isinstance(rng, int):
        rng = jax.random.key(rng)
    if mesh is None:
        return jax.jit(_init_pure, static_argnums=0)(cfg, rng)
    init = jax.jit(_init_pure, static_argnums=0, out_shardings=param_shardings(cfg, mesh))
    return init(cfg, rng)


def abstract_params(cfg: ModelConfig) -> dict:
    """ShapeDtypeStructs of the parameters (no allocation)."""
    dtype = jnp.dtype(cfg.param_dtype)
    return unflatten_params({n: jax.ShapeDtypeStruct(s.shape, dtype) for n, s in param_table(cfg).items()})


def apply(cfg: ModelConfig, params: dict, tokens_BxL: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Forward pass -> float32 logits [B, L, V]. `mesh` adds activation sharding constraints."""
    graphdef = _graphdef(cfg)
    model = nnx.merge(graphdef, params)
    return model(tokens_BxL, mesh)
