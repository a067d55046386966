"""templar_jax.convert: our params <-> Hugging Face LlamaForCausalLM (safetensors + config.json).

- `mapping`: the pure per-tensor mapping (names, layer slices, transposes).
- `hf_config`: ModelConfig <-> config.json (real rope_theta/eps/heads).
- `safetensors_io`: streaming sharded writer, validating mmap reader.
- `to_hf.export_hf`, `from_hf.load_hf_params` / `import_hf_checkpoint`, `verify.verify_hf_dir`.
"""

from templar_jax.convert.mapping import ConversionError

__all__ = ["ConversionError"]
