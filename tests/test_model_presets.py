"""Presets, parameter counts and the plain-dict parameter layout."""

import jax
import numpy as np
import pytest

from templar_jax.model import (
    ModelConfigError,
    ParamTreeError,
    available_presets,
    flatten_params,
    init_params,
    load_model_config,
    param_count,
    param_logical_axes,
    param_shapes,
    unflatten_params,
)

EXPECTED_NAMES = [
    "embed/embedding",
    "final_norm/scale",
    "layers/attn/wk",
    "layers/attn/wo",
    "layers/attn/wq",
    "layers/attn/wv",
    "layers/attn_norm/scale",
    "layers/mlp/w_down",
    "layers/mlp/w_gate",
    "layers/mlp/w_up",
    "layers/mlp_norm/scale",
]


def test_all_presets_present():
    assert {"tiny", "150m", "1b", "8b", "70b", "covenant-72b"} <= set(available_presets())


def test_covenant_72b_counts():
    cfg = load_model_config("covenant-72b")
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (8192, 80, 64, 8, 128)
    assert (cfg.d_ff, cfg.vocab_size, cfg.tie_embeddings) == (28672, 262144, True)
    assert cfg.rope_theta == 500000.0 and cfg.norm_eps == 1e-5
    assert round(param_count(cfg) / 1e9, 1) == 70.6
    assert round(param_count(cfg, untied=True) / 1e9, 1) == 72.7
    # one decoder layer = 855.7M (the DESIGN's per-layer benchmark unit)
    shapes = param_shapes(cfg)["layers"]
    per_layer = sum(np.prod(s[1:]) for s in jax.tree.leaves(shapes, is_leaf=lambda x: isinstance(x, tuple)))
    assert round(per_layer / 1e6, 1) == 855.7


@pytest.mark.parametrize("name,billions", [("8b", 8.03), ("70b", 70.55)])
def test_llama3_counts(name, billions):
    cfg = load_model_config(name)
    assert not cfg.tie_embeddings and cfg.vocab_size == 128256 and cfg.rope_theta == 500000.0
    assert round(param_count(cfg) / 1e9, 2) == billions
    assert param_count(cfg, untied=True) == param_count(cfg)


def test_tiny_preset_is_fixed():
    cfg = load_model_config("tiny")
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads) == (4096, 128, 2, 4, 2)
    assert (cfg.head_dim, cfg.d_ff, cfg.max_seq_len, cfg.tie_embeddings) == (32, 384, 128, True)
    assert cfg.rope_theta == 10000.0 and cfg.norm_eps == 1e-5
    assert cfg.dtype == "bfloat16" and cfg.param_dtype == "float32"


def test_overrides_and_errors(tmp_path):
    cfg = load_model_config("tiny", remat_policy="full", scan_layers=False, dtype=None)
    assert cfg.remat_policy == "full" and not cfg.scan_layers and cfg.dtype == "bfloat16"
    with pytest.raises(ModelConfigError, match="no model preset"):
        load_model_config("no-such-model")
    with pytest.raises(ModelConfigError, match="remat_policy"):
        load_model_config("tiny", remat_policy="sometimes")
    bad = tmp_path / "bad.yaml"
    bad.write_text("vocab_size: 10\nd_model: 8\nn_layers: 1\nn_heads: 3\nn_kv_heads: 2\nhead_dim: 4\nd_ff: 8\n")
    with pytest.raises(ModelConfigError, match="multiple of n_kv_heads"):
        load_model_config(bad)
    bad.write_text("vocab_size: 10\nwidth: 3\n")
    with pytest.raises(ModelConfigError, match="unknown keys"):
        load_model_config(bad)


def test_init_layout_matches_contract():
    cfg = load_model_config("tiny")
    params = init_params(cfg, 0)
    flat = flatten_params(params)
    assert sorted(flat) == EXPECTED_NAMES
    flat_shapes = flatten_params(param_shapes(cfg))
    flat_axes = flatten_params(param_logical_axes(cfg))
    for name, arr in flat.items():
        assert arr.shape == flat_shapes[name], name
        assert len(flat_axes[name]) == arr.ndim, name
        assert arr.dtype == np.float32
    assert sum(a.size for a in flat.values()) == param_count(cfg)
    assert flat["layers/attn/wq"].shape == (2, 128, 128)
    np.testing.assert_array_equal(flat["final_norm/scale"], np.ones(128, np.float32))
    untied = cfg.replace(tie_embeddings=False)
    assert flatten_params(param_shapes(untied))["lm_head/kernel"] == (128, 4096)


def test_flatten_roundtrip_and_errors():
    tree = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    flat = flatten_params(tree)
    assert flat == {"a/b": 1, "a/c/d": 2, "e": 3}
    assert unflatten_params(flat) == tree
    with pytest.raises(ParamTreeError):
        unflatten_params({"a": 1, "a/b": 2})
    with pytest.raises(ParamTreeError):
        unflatten_params({"a//b": 1})
    with pytest.raises(ParamTreeError):
        flatten_params({"a/b": 1})


def test_the_parameter_table_is_what_the_layers_create():
    from flax import nnx

    from templar_jax.model import abstract_params, param_batch_dims, param_table
    from templar_jax.model.llama import Decoder

    for cfg in (load_model_config("tiny"), load_model_config("tiny", tie_embeddings=False)):
        table = param_table(cfg)
        created = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))), nnx.Param))
        assert {n: a.shape for n, a in flatten_params(created).items()} == {n: s.shape for n, s in table.items()}
        assert {n: a.shape for n, a in flatten_params(abstract_params(cfg)).items()} == {
            n: s.shape for n, s in table.items()}
        # stacked is a column of the table, not a name rule; today it agrees with the prefix
        assert param_batch_dims(cfg) == {n: int(n.startswith("layers/")) for n in table}
        assert all(s.logical_axes[0] == "layers" for s in table.values() if s.stacked)


def test_layers_take_their_shapes_from_the_table(monkeypatch):
    import dataclasses

    from flax import nnx

    from templar_jax.model import layers
    from templar_jax.model.llama import Decoder

    cfg = load_model_config("tiny")
    real = layers.param_table

    def wider_up(c):
        table = dict(real(c))
        spec = table["layers/mlp/w_up"]
        table["layers/mlp/w_up"] = dataclasses.replace(spec, shape=(*spec.shape[:-1], 7))
        return table

    monkeypatch.setattr(layers, "param_table", wider_up)
    created = nnx.state(nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0))), nnx.Param)
    assert flatten_params(nnx.to_pure_dict(created))["layers/mlp/w_up"].shape == (2, 128, 7)


def test_init_is_bit_identical_per_seed_and_differs_across_seeds():
    cfg = load_model_config("tiny")
    a, b, c = (flatten_params(init_params(cfg, s)) for s in (3, 3, 4))
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]))
    assert not np.array_equal(np.asarray(a["layers/attn/wq"]), np.asarray(c["layers/attn/wq"]))
    # the table's initializers: unit norm scales, N(0, 0.02) matrices
    assert np.all(np.asarray(a["layers/mlp_norm/scale"]) == 1.0)
    assert abs(float(np.std(np.asarray(a["embed/embedding"]))) - 0.02) < 1e-3
