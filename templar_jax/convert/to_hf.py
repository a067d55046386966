"""Export our params to a Hugging Face LlamaForCausalLM directory.

Streaming: each HF tensor is read (one layer slice of our stacked tensors),
transposed, cast and appended to its safetensors shard before the next is
touched, so peak host memory is about one tensor, never a second model copy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import ml_dtypes
import numpy as np

from templar_jax.convert.hf_config import hf_config_from_model
from templar_jax.convert.mapping import ConversionError, hf_tensor_plan, ours_to_hf
from templar_jax.convert.safetensors_io import StreamingSafetensorsWriter
from templar_jax.model.param_table import flat_param_shapes

log = logging.getLogger(__name__)

EXPORT_DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float32": np.dtype(np.float32)}
DEFAULT_MAX_SHARD_BYTES = 5 * 1000**3  # 5 GB, as transformers' save_pretrained


def _check_source(source, cfg) -> None:
    want = flat_param_shapes(cfg)
    for name, shape in want.items():
        got = source.shape(name)
        if tuple(got) != shape:
            raise ConversionError(f"{name} has shape {tuple(got)}; the model config needs {shape}")


def export_hf(source, cfg, out_dir: str | Path, *, dtype: str = "bfloat16",
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, progress=None,
              bos_token_id: Optional[int] = None, eos_token_id: Optional[int] = None) -> list[str]:
    """Write `config.json` + safetensors (+ index when sharded) for `source` (a TreeSource/OrbaxSource).

    `progress(i, n, hf_name)` is called after each tensor (for a progress bar).
    Returns the file names written, relative to `out_dir`.
    """
    if dtype not in EXPORT_DTYPES:
        raise ConversionError(f"export dtype {dtype!r} must be one of {sorted(EXPORT_DTYPES)}")
    np_dtype = EXPORT_DTYPES[dtype]
    _check_source(source, cfg)
    out_dir = Path(out_dir)
    plan = hf_tensor_plan(cfg)
    writer = StreamingSafetensorsWriter(
        out_dir, [(s.hf_name, s.hf_shape, np_dtype) for s in plan],
        max_shard_bytes=max_shard_bytes)
    for i, spec in enumerate(plan):
        value = source.read(spec.our_name, spec.layer)
        hf_value = ours_to_hf(value, spec, np_dtype)
        del value  # free our copy before the write
        writer.write(spec.hf_name, hf_value)
        del hf_value
        if progress is not None:
            progress(i + 1, len(plan), spec.hf_name)
    files = writer.close()
    config = hf_config_from_model(cfg, dtype=dtype, bos_token_id=bos_token_id,
                                  eos_token_id=eos_token_id)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    log.info("exported %d tensors (%.1f MB, %s) to %s in %d file(s)", len(plan),
             writer.total_bytes / 1e6, dtype, out_dir, len(files))
    return files + ["config.json"]
