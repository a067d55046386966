"""Forward/grad equivalences: scan vs loop, remat policies, sharded vs unsharded (8 CPU devices)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from templar_jax.model import apply, init_params, load_model_config
from templar_jax.model.sharding import MeshSpecError, make_mesh, parse_mesh_spec

_apply = jax.jit(apply, static_argnums=(0, 3))


@pytest.fixture(scope="module")
def setup():
    # a smaller cousin of `tiny` keeps compile times (the cost on CPU) low
    cfg = load_model_config("tiny", dtype="float32", n_layers=2, vocab_size=512, d_model=64, d_ff=128, head_dim=16)
    params = init_params(cfg, 0)
    tokens = jax.random.randint(jax.random.key(1), (8, 32), 0, cfg.vocab_size)
    return cfg, params, tokens


def _loss(cfg, params, tokens):
    logits = apply(cfg, params, tokens[:, :-1])
    logp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()


_value_and_grad = jax.jit(jax.value_and_grad(_loss, argnums=1), static_argnums=0)


def test_causal_and_finite(setup):
    cfg, params, tokens = setup
    logits = _apply(cfg, params, tokens, None)
    assert logits.shape == (8, 32, cfg.vocab_size) and logits.dtype == jnp.float32
    changed = tokens.at[:, 20:].set(7)
    logits2 = _apply(cfg, params, changed, None)
    np.testing.assert_allclose(logits[:, :20], logits2[:, :20], atol=1e-5)
    assert float(jnp.abs(logits[:, 20:] - logits2[:, 20:]).max()) > 1e-3


@pytest.mark.parametrize("scan,policy", [(False, "full"), (True, "dots_saveable")])
def test_scan_and_remat_equal(setup, scan, policy):
    cfg, params, tokens = setup
    ref_loss, ref_grads = _value_and_grad(cfg, params, tokens)
    other = cfg.replace(scan_layers=scan, remat_policy=policy)
    loss, grads = _value_and_grad(other, params, tokens)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads)):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(_apply(other, params, tokens, None), _apply(cfg, params, tokens, None), atol=1e-5)


def test_bf16_close_to_fp32(setup):
    cfg, params, tokens = setup
    ref = _apply(cfg, params, tokens, None)
    low = _apply(cfg.replace(dtype="bfloat16"), params, tokens, None)
    assert low.dtype == jnp.float32
    assert float(jnp.abs(low - ref).max()) < 0.05 * float(jnp.abs(ref).max())


@pytest.mark.parametrize("spec", ["data=2,fsdp=2,tensor=2", "fsdp=8"])
def test_sharded_forward_equals_unsharded(setup, spec):
    cfg, params, tokens = setup
    mesh = make_mesh(spec)
    sharded = init_params(cfg, 0, mesh)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)  # born sharded, same values
    wq = sharded["layers"]["attn"]["wq"]
    assert not wq.sharding.is_fully_replicated
    assert wq.addressable_shards[0].data.size < wq.size
    out = _apply(cfg, sharded, tokens, mesh)
    assert "fsdp" in str(out.sharding.spec[0])
    np.testing.assert_allclose(out, _apply(cfg, params, tokens, None), atol=2e-5, rtol=1e-5)


def test_mesh_spec_parsing():
    assert parse_mesh_spec("fsdp=8") == {"data": 1, "fsdp": 8, "tensor": 1}
    assert parse_mesh_spec({"tensor": 2, "data": 4}) == {"data": 4, "fsdp": 1, "tensor": 2}
    with pytest.raises(MeshSpecError):
        parse_mesh_spec("pipeline=2")
    with pytest.raises(MeshSpecError):
        parse_mesh_spec("fsdp=x")
    with pytest.raises(MeshSpecError, match="needs 4 devices"):
        make_mesh("fsdp=4")
    assert dict(make_mesh().shape) == {"data": 1, "fsdp": 8, "tensor": 1}
