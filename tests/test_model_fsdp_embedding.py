"""The tied embedding under FSDP (model/fsdp_embedding.py), on 8 fake CPU devices: the table is
gathered in bf16 (cast on the shards), its gradient is reduce-scattered in fp32 one vocabulary
slice at a time and never all-gathered in fp32; the values match the replicated path's."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from templar_jax.model import apply, init_params, load_model_config
from templar_jax.model.fsdp_embedding import LOGITS_GRAD_CHUNKS, fsdp_table, logits, lookup
from templar_jax.model.sharding import make_mesh

V, D = 512, 64


def _cfg(dtype):
    return load_model_config("tiny", dtype=dtype, n_layers=1, vocab_size=V, d_model=D, d_ff=128, head_dim=16)


def _loss(cfg, mesh, tokens):
    def loss(params):
        logits = apply(cfg, params, tokens[:, :-1], mesh)
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), tokens[:, 1:, None], axis=-1).mean()
    return loss


def _collectives(text: str, op: str) -> list[tuple[str, str]]:
    """(operand type, result type) of every `op` in lowered StableHLO text."""
    pattern = rf'"stablehlo.{op}".*?\) -> (tensor<[^>]*>)'
    found = []
    for m in re.finditer(pattern, text, re.S):
        operand = re.findall(r"\((tensor<[^>]*>)\) -> tensor<[^>]*>$", m.group(0))
        found.append((operand[-1] if operand else "", m.group(1)))
    return found


def test_which_meshes_take_the_per_shard_path():
    assert fsdp_table(make_mesh("fsdp=8"), (V, D), 8)
    assert fsdp_table(make_mesh("data=2,fsdp=4"), (V, D), 8)
    assert not fsdp_table(None, (V, D), 8)
    assert not fsdp_table(make_mesh("data=8"), (V, D), 8)  # nothing split: replicated path
    assert not fsdp_table(make_mesh("data=2,fsdp=2,tensor=2"), (V, D), 8)
    assert not fsdp_table(make_mesh("fsdp=8"), (V, 60), 8)  # D does not divide
    assert not fsdp_table(make_mesh("fsdp=8"), (V, D), 4)  # batch does not divide


def test_table_is_gathered_in_bf16_and_its_gradient_reduced_in_fp32():
    cfg, mesh = _cfg("bfloat16"), make_mesh("fsdp=8")
    params = init_params(cfg, 0, mesh)
    tokens = jnp.zeros((8, 17), jnp.int32)
    text = jax.jit(jax.grad(_loss(cfg, mesh, tokens))).lower(params).as_text()
    gathers = [r for _, r in _collectives(text, "all_gather")]
    assert f"tensor<{V}x{D}xbf16>" in gathers  # the table, cast on its shards first
    assert f"tensor<{V}x{D}xf32>" not in gathers
    scatters = _collectives(text, "reduce_scatter")
    table_grads = [r for r in (r for _, r in scatters) if r.startswith(f"tensor<{V // LOGITS_GRAD_CHUNKS}x{D // 8}x")]
    assert table_grads == [f"tensor<{V // LOGITS_GRAD_CHUNKS}x{D // 8}xf32>"] * LOGITS_GRAD_CHUNKS


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
@pytest.mark.parametrize("spec", ["fsdp=8", "data=2,fsdp=4"])
def test_values_match_the_replicated_path(dtype, spec):
    mesh, dt = make_mesh(spec), jnp.dtype(dtype)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    table = 0.02 * jax.random.normal(k1, (V, D), jnp.float32)
    tokens = jax.random.randint(k2, (8, 16), 0, V)
    x = jax.random.normal(k3, (8, 16, D), jnp.float32).astype(dt)
    table_s = jax.device_put(table, NamedSharding(mesh, P(None, "fsdp")))

    def replicated(t, x):
        rows = jnp.take(t.astype(dt), tokens, axis=0)
        return rows, jnp.einsum("bld,vd->blv", x, t.astype(dt), preferred_element_type=jnp.float32)

    def per_shard(t, x):
        return lookup(t, tokens, mesh, dt), logits(x, t, mesh, dt)

    def loss(fn):
        def f(t, x):
            rows, out = fn(t, x)
            return jnp.sum(rows.astype(jnp.float32) ** 2) + jnp.sum(jnp.sin(out))
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1)))

    rows, out = jax.jit(per_shard)(table_s, x)
    rows_ref, out_ref = jax.jit(replicated)(table, x)
    np.testing.assert_array_equal(rows, rows_ref)  # a lookup: the same values, bit for bit
    np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)
    (_, (g, gx)), (_, (g_ref, gx_ref)) = loss(per_shard)(table_s, x), loss(replicated)(table, x)
    assert g.sharding.spec == P(None, "fsdp")
    # fp32: summation order only; bf16: the replicated path rounds the table's gradient to bf16
    scale = float(jnp.max(jnp.abs(g_ref)))
    np.testing.assert_allclose(g, g_ref, atol=(1e-5 if dtype == "float32" else 1e-2) * scale)
    np.testing.assert_allclose(gx.astype(jnp.float32), gx_ref.astype(jnp.float32), rtol=1e-2, atol=1e-2)
