"""ModelConfig <-> Hugging Face `config.json` (LlamaForCausalLM).

We write the real architecture numbers (the reference's export wrote rope_theta
10000 and eps 1e-6 for a model trained with 500000 / 1e-5, SPEC sec. 7). Both
the transformers 4.x keys (`rope_theta`, `torch_dtype`) and the 5.x keys
(`rope_parameters`, `dtype`) are written so either version loads the export
with the same rope. On import, features our model does not implement (biases,
rope scaling, other activations) are refused rather than silently dropped.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from templar_jax.convert.mapping import ConversionError

HF_DTYPE_NAMES = {"bfloat16": "bfloat16", "float32": "float32", "float16": "float16"}


def hf_config_from_model(cfg, *, dtype: str = "bfloat16", bos_token_id: Optional[int] = None,
                         eos_token_id: Optional[int] = None) -> dict[str, Any]:
    """config.json contents for our ModelConfig exported at `dtype`."""
    if dtype not in HF_DTYPE_NAMES:
        raise ConversionError(f"export dtype {dtype!r} must be one of {sorted(HF_DTYPE_NAMES)}")
    theta = float(cfg.rope_theta)
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(cfg.vocab_size),
        "hidden_size": int(cfg.d_model),
        "intermediate_size": int(cfg.d_ff),
        "num_hidden_layers": int(cfg.n_layers),
        "num_attention_heads": int(cfg.n_heads),
        "num_key_value_heads": int(cfg.n_kv_heads),
        "head_dim": int(cfg.head_dim),
        "hidden_act": "silu",
        "max_position_embeddings": int(cfg.max_seq_len),
        "rms_norm_eps": float(cfg.norm_eps),
        "rope_theta": theta,
        "rope_scaling": None,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": bool(cfg.tie_embeddings),
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": HF_DTYPE_NAMES[dtype],
        "dtype": HF_DTYPE_NAMES[dtype],
    }


def _rope_theta(config: Mapping[str, Any]) -> float:
    params = config.get("rope_parameters")
    scaling = config.get("rope_scaling")
    for block in (params, scaling):
        if block is None:
            continue
        if not isinstance(block, Mapping):
            raise ConversionError(f"config.json rope block {block!r} is not a mapping")
        rope_type = block.get("rope_type", block.get("type", "default"))
        if rope_type not in (None, "default"):
            raise ConversionError(f"rope type {rope_type!r} is not supported (only default RoPE)")
    if params and "rope_theta" in params:
        return float(params["rope_theta"])
    return float(config.get("rope_theta", 10000.0))  # LlamaConfig's own default


def model_fields_from_hf(config: Mapping[str, Any]) -> dict[str, Any]:
    """ModelConfig keyword arguments for an HF Llama config.json mapping."""
    model_type = config.get("model_type")
    if model_type != "llama":
        raise ConversionError(f"model_type {model_type!r} is not 'llama'")
    for key in ("attention_bias", "mlp_bias"):
        if config.get(key):
            raise ConversionError(f"{key}=true is not supported (our model has no biases)")
    act = config.get("hidden_act", "silu")
    if act != "silu":
        raise ConversionError(f"hidden_act {act!r} is not supported (SwiGLU uses silu)")
    if int(config.get("pretraining_tp", 1) or 1) != 1:
        raise ConversionError("pretraining_tp != 1 is not supported")
    try:
        d_model = int(config["hidden_size"])
        n_heads = int(config["num_attention_heads"])
        fields = {
            "vocab_size": int(config["vocab_size"]),
            "d_model": d_model,
            "n_layers": int(config["num_hidden_layers"]),
            "n_heads": n_heads,
            "n_kv_heads": int(config.get("num_key_value_heads") or n_heads),
            "head_dim": int(config.get("head_dim") or d_model // n_heads),
            "d_ff": int(config["intermediate_size"]),
            "rope_theta": _rope_theta(config),
            "norm_eps": float(config.get("rms_norm_eps", 1e-6)),
            "tie_embeddings": bool(config.get("tie_word_embeddings", False)),
            "max_seq_len": int(config.get("max_position_embeddings", 2048)),
        }
    except KeyError as err:
        raise ConversionError(f"config.json lacks {err.args[0]!r}") from err
    except (TypeError, ValueError) as err:
        raise ConversionError(f"config.json has a malformed number: {err}") from err
    return fields


def model_config_from_hf(config: Mapping[str, Any], **overrides: Any):
    """A ModelConfig (ours) for an HF config.json mapping; overrides e.g. dtype/param_dtype."""
    from templar_jax.model.config import ModelConfig, ModelConfigError

    fields = model_fields_from_hf(config)
    fields.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ModelConfig(**fields)
    except (ModelConfigError, TypeError) as err:
        raise ConversionError(f"config.json gives an invalid model config: {err}") from err
