"""Converter pieces that need no torch: the plan, config.json, the safetensors writer/reader."""

from __future__ import annotations

import json
import struct

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file as st_load_numpy

from templar_jax.convert.hf_config import hf_config_from_model, model_fields_from_hf
from templar_jax.convert.mapping import ConversionError, hf_tensor_plan, hf_to_ours, ours_to_hf
from templar_jax.convert.safetensors_io import (
    INDEX_FILE,
    HFWeights,
    SafetensorsError,
    SafetensorsFile,
    StreamingSafetensorsWriter,
)
from templar_jax.convert.sources import TreeSource
from templar_jax.convert.to_hf import export_hf
from templar_jax.model.config import ModelConfig, load_model_config


def _tiny(tied: bool) -> ModelConfig:
    return ModelConfig(vocab_size=96, d_model=16, n_layers=3, n_heads=4, n_kv_heads=2,
                       head_dim=8, d_ff=40, tie_embeddings=tied, max_seq_len=64)


def test_plan_names_shapes_and_transposes():
    cfg = _tiny(tied=False)
    plan = hf_tensor_plan(cfg)
    assert len(plan) == 2 + 9 * cfg.n_layers + 1
    by_name = {s.hf_name: s for s in plan}
    q = by_name["model.layers.2.self_attn.q_proj.weight"]
    assert (q.our_name, q.layer, q.transpose, q.hf_shape) == ("layers/attn/wq", 2, True, (32, 16))
    assert by_name["model.layers.0.self_attn.k_proj.weight"].hf_shape == (16, 16)  # KV*hd x D
    assert by_name["model.layers.1.mlp.down_proj.weight"].hf_shape == (16, 40)
    assert by_name["model.layers.1.input_layernorm.weight"].transpose is False
    assert by_name["lm_head.weight"].hf_shape == (96, 16)
    assert by_name["model.embed_tokens.weight"].hf_shape == (96, 16)
    assert "lm_head.weight" not in {s.hf_name for s in hf_tensor_plan(_tiny(tied=True))}

    kernel = np.arange(16 * 32, dtype=np.float32).reshape(16, 32)
    hf = ours_to_hf(kernel, q)
    assert hf.shape == (32, 16) and hf[5, 3] == kernel[3, 5] and hf.flags.c_contiguous
    np.testing.assert_array_equal(hf_to_ours(hf, q), kernel)
    with pytest.raises(ConversionError, match="q_proj"):
        hf_to_ours(kernel, q)


def test_config_json_carries_the_real_72b_numbers():
    cfg = load_model_config("covenant-72b")
    config = hf_config_from_model(cfg, dtype="bfloat16")
    assert config["rope_theta"] == 500000.0 and config["rms_norm_eps"] == 1e-5
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 500000.0}
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["head_dim"]) == (64, 8, 128)
    assert (config["intermediate_size"], config["vocab_size"]) == (28672, 262144)
    assert config["max_position_embeddings"] == 2048 and config["tie_word_embeddings"] is True
    fields = model_fields_from_hf(json.loads(json.dumps(config)))
    assert all(getattr(cfg, k) == v for k, v in fields.items())


def test_config_refuses_what_we_do_not_model():
    base = hf_config_from_model(_tiny(True), dtype="float32")
    for patch, reason in [({"model_type": "gemma"}, "model_type"),
                          ({"attention_bias": True}, "attention_bias"),
                          ({"hidden_act": "gelu"}, "hidden_act"),
                          ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 5e5}}, "llama3"),
                          ({"rope_scaling": {"type": "linear", "factor": 2.0}}, "linear")]:
        with pytest.raises(ConversionError, match=reason):
            model_fields_from_hf({**base, **patch})
    legacy = {k: v for k, v in base.items() if k != "rope_parameters"}
    assert model_fields_from_hf({**legacy, "rope_theta": 1234.0})["rope_theta"] == 1234.0
    with pytest.raises(ConversionError, match="hidden_size"):
        model_fields_from_hf({k: v for k, v in base.items() if k != "hidden_size"})


def test_streaming_writer_is_readable_by_safetensors_and_shards(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {f"t{i}": rng.standard_normal((i + 1, 7)).astype(np.float32) for i in range(6)}
    entries = [(n, a.shape, a.dtype) for n, a in tensors.items()]
    one = StreamingSafetensorsWriter(tmp_path / "one", entries, max_shard_bytes=1 << 30)
    for name, arr in tensors.items():
        one.write(name, arr)
    assert one.close() == ["model.safetensors"]
    loaded = st_load_numpy(str(tmp_path / "one" / "model.safetensors"))  # the official reader
    assert set(loaded) == set(tensors)
    for name in tensors:
        np.testing.assert_array_equal(loaded[name], tensors[name])

    many = StreamingSafetensorsWriter(tmp_path / "many", entries, max_shard_bytes=200)
    for name, arr in tensors.items():
        many.write(name, arr)
    files = many.close()
    assert files[-1] == INDEX_FILE and len(files) > 3
    index = json.loads((tmp_path / "many" / INDEX_FILE).read_text())
    assert index["metadata"]["total_size"] == sum(a.nbytes for a in tensors.values())
    assert set(index["weight_map"]) == set(tensors)
    weights = HFWeights(tmp_path / "many")
    for name in tensors:
        np.testing.assert_array_equal(weights.get(name), tensors[name])

    bad = StreamingSafetensorsWriter(tmp_path / "bad", entries, max_shard_bytes=1 << 30)
    with pytest.raises(SafetensorsError, match="out of order"):
        bad.write("t1", tensors["t1"])
    with pytest.raises(SafetensorsError, match="planned"):
        bad.write("t0", tensors["t0"].astype(np.float16))
    bad.write("t0", tensors["t0"])
    with pytest.raises(SafetensorsError, match="incomplete"):
        bad.close()


def test_reader_rejects_malformed_files(tmp_path):
    good = tmp_path / "good.safetensors"
    w = StreamingSafetensorsWriter(tmp_path, [("x", (4,), np.float32)], max_shard_bytes=1 << 20)
    w.write("x", np.arange(4, dtype=np.float32))
    w.close()
    (tmp_path / "model.safetensors").rename(good)
    raw = good.read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])

    def variant(name, data):
        path = tmp_path / name
        path.write_bytes(data)
        return path

    def with_header(h, tail=raw[8 + hlen:]):
        body = json.dumps(h).encode()
        return struct.pack("<Q", len(body)) + body + tail

    cases = {
        "short": (b"\x01\x02", "too short"),
        "hlen": (struct.pack("<Q", 1 << 40) + raw[8:], "out of bounds"),
        "json": (struct.pack("<Q", 4) + b"{{{{" + raw[12:], "not JSON"),
        "dtype": (with_header({**header, "x": {**header["x"], "dtype": "Q7"}}), "bad header entry"),
        "offsets": (with_header({**header, "x": {**header["x"], "data_offsets": [0, 99]}}),
                    "inconsistent"),
        "truncated": (raw[:-4], "inconsistent"),
        "trailing": (raw + b"\0" * 8, "trailing"),
    }
    for name, (data, reason) in cases.items():
        with pytest.raises(SafetensorsError, match=reason):
            SafetensorsFile(variant(name, data))
    np.testing.assert_array_equal(SafetensorsFile(good).get("x"), np.arange(4, dtype=np.float32))


def test_export_from_a_params_tree_casts_to_bf16(tmp_path):
    cfg = _tiny(tied=True)
    rng = np.random.default_rng(1)
    from templar_jax.model import flat_param_shapes

    flat = {n: rng.standard_normal(s).astype(np.float32) for n, s in flat_param_shapes(cfg).items()}
    files = export_hf(TreeSource(flat), cfg, tmp_path, dtype="bfloat16")
    assert files == ["model.safetensors", "config.json"]
    weights = HFWeights(tmp_path)
    up = weights.get("model.layers.1.mlp.up_proj.weight")
    assert up.dtype == ml_dtypes.bfloat16
    np.testing.assert_array_equal(up, flat["layers/mlp/w_up"][1].T.astype(ml_dtypes.bfloat16))
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    flat["layers/attn/wq"] = flat["layers/attn/wq"][:, :, :8]
    with pytest.raises(ConversionError, match="layers/attn/wq"):
        export_hf(TreeSource(flat), cfg, tmp_path / "x")


def test_export_from_sharded_orbax_checkpoint_equals_tree_export(tmp_path):
    """OrbaxSource reads layer slices straight from the OCDBT store of an 8-device save."""
    import jax

    from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints
    from templar_jax.model import flat_param_shapes
    from templar_jax.convert.sources import OrbaxSource
    from templar_jax.model.params import unflatten_params
    from templar_jax.model.sharding import make_mesh, param_shardings

    cfg = _tiny(tied=False)
    rng = np.random.default_rng(2)
    flat = {n: rng.standard_normal(s).astype(np.float32) for n, s in flat_param_shapes(cfg).items()}
    sharded = jax.device_put(unflatten_params(flat), param_shardings(cfg, make_mesh("fsdp=8")))
    with LocalCheckpoints(tmp_path / "ck") as ckpts:
        ckpts.save(4, sharded, meta=CheckpointMeta(4, 120, "v"))
        ckpts.wait()
    source = OrbaxSource(tmp_path / "ck")
    assert source.step_dir.name == "4" and source.meta["window"] == 4
    assert sorted(source.names()) == sorted(flat)
    np.testing.assert_array_equal(source.read("layers/mlp/w_down", 2), flat["layers/mlp/w_down"][2])
    export_hf(source, cfg, tmp_path / "a", dtype="float32", max_shard_bytes=10_000)
    export_hf(TreeSource(sharded), cfg, tmp_path / "b", dtype="float32", max_shard_bytes=10_000)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and len(names) > 4
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with pytest.raises(ConversionError, match="no step 7"):
        OrbaxSource(tmp_path / "ck", step=7)
