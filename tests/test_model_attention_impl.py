"""attention_impl: config validation, "auto" resolution, and the cuDNN length padding (run on
the CPU by standing XLA in for cuDNN: the padded call must give the unpadded result)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from templar_jax.model import layers
from templar_jax.model.config import ModelConfigError, load_model_config


def test_unknown_attention_impl_is_a_config_error():
    with pytest.raises(ModelConfigError, match="attention_impl"):
        load_model_config("tiny", attention_impl="flash")


def test_auto_is_xla_off_gpu_and_for_float32():
    assert layers.attention_backend(load_model_config("tiny", attention_impl="auto")) == "xla"
    assert layers.attention_backend(load_model_config("tiny", attention_impl="cudnn")) == "cudnn"


def test_cudnn_padding_leaves_causal_result_unchanged(monkeypatch):
    seen = []
    real = jax.nn.dot_product_attention

    def fake_cudnn(q, k, v, *, is_causal, implementation):
        seen.append((q.shape[1], implementation))
        return real(q, k, v, is_causal=is_causal, implementation="xla")

    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (2, 127, 4, 32))
    k, v = (jax.random.normal(key, (2, 127, 2, 32)) for key in keys[1:])
    want = layers.causal_attention(q, k, v, "xla")
    monkeypatch.setattr(jax.nn, "dot_product_attention", fake_cudnn)
    got = layers.causal_attention(q, k, v, "cudnn")
    assert seen == [(128, "cudnn")]
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-6)
    assert jnp.isfinite(got).all()
