"""Flax NNX building blocks of the LLaMA-3-style decoder.

Parameters are bare `nnx.Param` arrays named as in docs/interfaces.md (`wq`, `w_gate`,
`scale`, ...), no biases; each takes its shape and initializer from the parameter table
(param_table.py) by its flat name. Parameters are stored in `param_dtype` (fp32) and cast to the
compute dtype (bf16) at use; norms and softmax statistics run in fp32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from templar_jax.model import fsdp_embedding
from templar_jax.model.config import ModelConfig
from templar_jax.model.param_table import INIT_STD, ParamSpec, param_table
from templar_jax.model.sharding import constrain


def new_param(cfg: ModelConfig, name: str, rngs: nnx.Rngs | None) -> nnx.Param:
    """The parameter `name` of the table (one layer's slice when stacked: the decoder creates
    layers under nnx.vmap, which adds the [L] axis), in `param_dtype`."""
    spec: ParamSpec = param_table(cfg)[name]
    dtype = jnp.dtype(cfg.param_dtype)
    if spec.init == "ones":
        return nnx.Param(jnp.ones(spec.layer_shape, dtype))
    return nnx.Param(INIT_STD * jax.random.normal(rngs.params(), spec.layer_shape, dtype))


class RMSNorm(nnx.Module):
    def __init__(self, cfg: ModelConfig, name: str):
        self.scale = new_param(cfg, f"{name}/scale", None)
        self.eps = cfg.norm_eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (normed * self.scale[...].astype(jnp.float32)).astype(x.dtype)


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos/sin [L, head_dim] for the half-split (HF `rotate_half`) RoPE convention."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs_LxH2 = jnp.arange(seq_len, dtype=jnp.float32)[:, None] * inv_freq[None, :]
    emb_LxH = jnp.concatenate([freqs_LxH2, freqs_LxH2], axis=-1)
    return jnp.cos(emb_LxH), jnp.sin(emb_LxH)


def apply_rope(x_BxLxNxH: jax.Array, cos_LxH: jax.Array, sin_LxH: jax.Array) -> jax.Array:
    half = x_BxLxNxH.shape[-1] // 2
    x32 = x_BxLxNxH.astype(jnp.float32)
    rotated = jnp.concatenate([-x32[..., half:], x32[..., :half]], axis=-1)
    cos, sin = cos_LxH[None, :, None, :], sin_LxH[None, :, None, :]
    return (x32 * cos + rotated * sin).astype(x_BxLxNxH.dtype)


def attention_backend(cfg: ModelConfig, platform: str | None = None) -> str:
    """"xla" or "cudnn" for `jax.nn.dot_product_attention` ("auto": cuDNN's flash attention on
    NVIDIA GPUs for 16-bit compute, which it requires; XLA's einsum attention elsewhere).
    `platform` ("gpu", "tpu", "cpu") defaults to jax's default backend; the planner names it."""
    if cfg.attention_impl != "auto":
        return cfg.attention_impl
    on_gpu = (platform or jax.default_backend()) in ("gpu", "cuda")
    return "cudnn" if on_gpu and cfg.dtype in ("bfloat16", "float16") else "xla"


CUDNN_LENGTH_MULTIPLE = 64  # cuDNN's fused kernel rejects odd lengths (inputs are seq_len - 1)


def causal_attention(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, impl: str) -> jax.Array:
    """Causal GQA attention. For cuDNN the length is padded at the end to a multiple of 64:
    causal masking keeps every real query off the padded keys, so the result is unchanged."""
    length = q_BxLxNxH.shape[1]
    pad = -length % CUDNN_LENGTH_MULTIPLE if impl == "cudnn" else 0
    if pad:
        widths = ((0, 0), (0, pad), (0, 0), (0, 0))
        q_BxLxNxH, k_BxLxKxH, v_BxLxKxH = (jnp.pad(t, widths)
                                           for t in (q_BxLxNxH, k_BxLxKxH, v_BxLxKxH))
    out = jax.nn.dot_product_attention(q_BxLxNxH, k_BxLxKxH, v_BxLxKxH, is_causal=True,
                                       implementation=impl)
    return out[:, :length] if pad else out


class Attention(nnx.Module):
    """GQA self-attention with RoPE; the fused kernel is `cfg.attention_impl` (see
    `attention_backend`)."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.wq = new_param(cfg, "layers/attn/wq", rngs)
        self.wk = new_param(cfg, "layers/attn/wk", rngs)
        self.wv = new_param(cfg, "layers/attn/wv", rngs)
        self.wo = new_param(cfg, "layers/attn/wo", rngs)
        self.cfg = cfg

    def __call__(self, x_BxLxD, cos_LxH, sin_LxH, mesh: Mesh | None) -> jax.Array:
        cfg, dt = self.cfg, jnp.dtype(self.cfg.dtype)
        b, l, _ = x_BxLxD.shape
        x = x_BxLxD.astype(dt)
        q = (x @ self.wq[...].astype(dt)).reshape(b, l, cfg.n_heads, cfg.head_dim)
        k = (x @ self.wk[...].astype(dt)).reshape(b, l, cfg.n_kv_heads, cfg.head_dim)
        v = (x @ self.wv[...].astype(dt)).reshape(b, l, cfg.n_kv_heads, cfg.head_dim)
        q = constrain(apply_rope(q, cos_LxH, sin_LxH), mesh, "batch", "length", "act_heads", None)
        k = constrain(apply_rope(k, cos_LxH, sin_LxH), mesh, "batch", "length", "act_kv_heads", None)
        v = constrain(v, mesh, "batch", "length", "act_kv_heads", None)
        out_BxLxNxH = causal_attention(q, k, v, attention_backend(cfg))
        out = out_BxLxNxH.reshape(b, l, cfg.n_heads * cfg.head_dim)
        return out @ self.wo[...].astype(dt)


class MLP(nnx.Module):
    """SwiGLU: down(silu(x @ gate) * (x @ up))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.w_gate = new_param(cfg, "layers/mlp/w_gate", rngs)
        self.w_up = new_param(cfg, "layers/mlp/w_up", rngs)
        self.w_down = new_param(cfg, "layers/mlp/w_down", rngs)
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x_BxLxD, mesh: Mesh | None) -> jax.Array:
        dt = self.dtype
        x = x_BxLxD.astype(dt)
        gate = x @ self.w_gate[...].astype(dt)
        up = x @ self.w_up[...].astype(dt)
        h_BxLxF = constrain(jax.nn.silu(gate) * up, mesh, "batch", "length", "act_mlp")
        return h_BxLxF @ self.w_down[...].astype(dt)


class Block(nnx.Module):
    """Pre-norm decoder layer: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.attn_norm = RMSNorm(cfg, "layers/attn_norm")
        self.attn = Attention(cfg, rngs)
        self.mlp_norm = RMSNorm(cfg, "layers/mlp_norm")
        self.mlp = MLP(cfg, rngs)

    def __call__(self, x_BxLxD, cos_LxH, sin_LxH, mesh: Mesh | None) -> jax.Array:
        x = x_BxLxD + self.attn(self.attn_norm(x_BxLxD), cos_LxH, sin_LxH, mesh).astype(x_BxLxD.dtype)
        x = constrain(x, mesh, "batch", "length", "act_embed")
        x = x + self.mlp(self.mlp_norm(x), mesh).astype(x.dtype)
        return constrain(x, mesh, "batch", "length", "act_embed")


class Embed(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.embedding = new_param(cfg, "embed/embedding", rngs)
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, tokens_BxL: jax.Array, mesh: Mesh | None = None) -> jax.Array:
        # A table split over fsdp alone is looked up per shard, never whole (fsdp_embedding.py).
        # Otherwise gather from the whole (bf16) table: left to the SPMD partitioner, a gather
        # from a vocab- or embed-sharded table fell back to replicating the activations
        # ("involuntary full rematerialization").
        table = self.embedding[...]
        if fsdp_embedding.fsdp_table(mesh, table.shape, tokens_BxL.shape[0]):
            return fsdp_embedding.lookup(table, tokens_BxL, mesh, self.dtype)
        table_VxD = constrain(table.astype(self.dtype), mesh, None, None)
        return jnp.take(table_VxD, tokens_BxL.astype(jnp.int32), axis=0)

    def attend(self, x_BxLxD: jax.Array, mesh: Mesh | None = None) -> jax.Array:
        """Tied output projection: logits = x @ embedding.T (accumulated in fp32)."""
        if fsdp_embedding.fsdp_table(mesh, self.embedding.shape, x_BxLxD.shape[0]):
            return fsdp_embedding.logits(x_BxLxD, self.embedding[...], mesh, self.dtype)
        w = self.embedding[...].astype(self.dtype)
        return jnp.einsum("bld,vd->blv", x_BxLxD, w, preferred_element_type=jnp.float32)


class LMHead(nnx.Module):
    def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
        self.kernel = new_param(cfg, "lm_head/kernel", rngs)
        self.dtype = jnp.dtype(cfg.dtype)

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        w = self.kernel[...].astype(self.dtype)
        return jnp.einsum("bld,dv->blv", x_BxLxD, w, preferred_element_type=jnp.float32)
