"""The decoder: embedding, L stacked blocks (scan or Python loop), final norm, LM head.

Layer parameters are always stacked with a leading [L] axis (created with nnx.vmap), so the
parameter layout is the same whether the forward scans or loops. The layer body is wrapped
in jax.checkpoint with the configured remat policy.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh

from templar_jax.model.config import ModelConfig
from templar_jax.model.layers import Block, Embed, LMHead, RMSNorm, rope_tables
from templar_jax.model.sharding import constrain

_POLICIES = {
    "full": None,  # jax.checkpoint without a policy saves nothing
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_saveable": jax.checkpoint_policies.dots_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
    "everything_saveable": jax.checkpoint_policies.everything_saveable,
}


def _stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
    @nnx.split_rngs(splits=cfg.n_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0)
    def make(layer_rngs: nnx.Rngs) -> Block:
        return Block(cfg, layer_rngs)

    return make(rngs)


def remat(fn, policy_name: str):
    if policy_name == "none":
        return fn
    return jax.checkpoint(fn, policy=_POLICIES[policy_name], prevent_cse=True)


class Decoder(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = Embed(cfg, rngs)
        self.layers = _stacked_blocks(cfg, rngs)
        self.final_norm = RMSNorm(cfg, "final_norm")
        if not cfg.tie_embeddings:
            self.lm_head = LMHead(cfg, rngs)

    def __call__(self, tokens_BxL: jax.Array, mesh: Mesh | None = None) -> jax.Array:
        cfg = self.cfg
        seq_len = tokens_BxL.shape[1]
        cos_LxH, sin_LxH = rope_tables(seq_len, cfg.head_dim, cfg.rope_theta)
        x_BxLxD = constrain(self.embed(tokens_BxL, mesh), mesh, "batch", "length", "act_embed")

        graphdef, stacked_state = nnx.split(self.layers)

        def layer(x, layer_state):
            return nnx.merge(graphdef, layer_state)(x, cos_LxH, sin_LxH, mesh)

        layer = remat(layer, cfg.remat_policy)
        if cfg.scan_layers:
            x_BxLxD, _ = jax.lax.scan(lambda x, s: (layer(x, s), None), x_BxLxD, stacked_state)
        else:
            for i in range(cfg.n_layers):
                x_BxLxD = layer(x_BxLxD, jax.tree.map(lambda a: a[i], stacked_state))

        x_BxLxD = self.final_norm(x_BxLxD)
        if cfg.tie_embeddings:
            logits = self.embed.attend(x_BxLxD, mesh)
        else:
            logits = self.lm_head(x_BxLxD)
        return constrain(logits, mesh, "batch", "length", "act_vocab")
