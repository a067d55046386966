"""Functional model API: plain nested dicts of arrays at the boundary.

    params = init_params(cfg, rng, mesh)          # born sharded when mesh is given
    logits_BxLxV = apply(cfg, params, tokens_BxL)  # float32 logits; cfg is jit-static

Internally the NNX Decoder is rebuilt from a cached graphdef and the pure dict, so `apply`
is a pure function that jit/grad/scan handle like any other.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from templar_jax.model.config import ModelConfig
from templar_jax.model.llama import Decoder


def param_logical_axes(cfg: ModelConfig) -> dict:
    """Logical axis names per parameter (docs/interfaces.md layout)."""
    axes = {
        "embed": {"embedding": ("vocab", "embed")},
        "layers": {
            "attn_norm": {"scale": ("layers", "embed")},
            "attn": {
                "wq": ("layers", "embed", "heads"),
                "wk": ("layers", "embed", "kv_heads"),
                "wv": ("layers", "embed", "kv_heads"),
                "wo": ("layers", "heads", "embed"),
            },
            "mlp_norm": {"scale": ("layers", "embed")},
            "mlp": {
                "w_gate": ("layers", "embed", "mlp"),
                "w_up": ("layers", "embed", "mlp"),
                "w_down": ("layers", "mlp", "embed"),
            },
        },
        "final_norm": {"scale": ("embed",)},
    }
    if not cfg.tie_embeddings:
        axes["lm_head"] = {"kernel": ("embed", "vocab")}
    return axes


def param_shapes(cfg: ModelConfig) -> dict:
    """Shape tuple per parameter, by arithmetic (no tracing, works for 72B instantly)."""
    L, D, F, V = cfg.n_layers, cfg.d_model, cfg.d_ff, cfg.vocab_size
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim
    shapes = {
        "embed": {"embedding": (V, D)},
        "layers": {
            "attn_norm": {"scale": (L, D)},
            "attn": {"wq": (L, D, hq), "wk": (L, D, hkv), "wv": (L, D, hkv), "wo": (L, hq, D)},
            "mlp_norm": {"scale": (L, D)},
            "mlp": {"w_gate": (L, D, F), "w_up": (L, D, F), "w_down": (L, F, D)},
        },
        "final_norm": {"scale": (D,)},
    }
    if not cfg.tie_embeddings:
        shapes["lm_head"] = {"kernel": (D, V)}
    return shapes


def _leaves(tree) -> list:
    return jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, tuple))


def param_count(cfg: ModelConfig, untied: bool = False) -> int:
    """Number of parameters; `untied=True` counts a tied embedding twice (HF export view)."""
    total = sum(math.prod(s) for s in _leaves(param_shapes(cfg)))
    if untied and cfg.tie_embeddings:
        total += cfg.vocab_size * cfg.d_model
    return total


def embedding_param_count(cfg: ModelConfig) -> int:
    """Input-embedding table size (excluded from the 6*N FLOP count)."""
    return cfg.vocab_size * cfg.d_model


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
    from templar_jax.model.sharding import param_shardings

    init = jax.jit(_init_pure, static_argnums=0, out_shardings=param_shardings(cfg, mesh))
    return init(cfg, rng)


def abstract_params(cfg: ModelConfig) -> dict:
    """ShapeDtypeStructs of the parameters (no allocation)."""
    dtype = jnp.dtype(cfg.param_dtype)
    return jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s, dtype),
        param_shapes(cfg),
        is_leaf=lambda x: isinstance(x, tuple),
    )


def apply(cfg: ModelConfig, params: dict, tokens_BxL: jax.Array, mesh: Mesh | None = None) -> jax.Array:
    """Forward pass -> float32 logits [B, L, V]. `mesh` adds activation sharding constraints."""
    graphdef = _graphdef(cfg)
    model = nnx.merge(graphdef, params)
    return model(tokens_BxL, mesh)
