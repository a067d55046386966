"""Cross-check our forward against `transformers` on the same HF checkpoint.

Both load the same files; both run the same random tokens in fp32; the max
absolute logit difference says whether the mapping (and our model) is right.
Needs torch + transformers (extra [hf]).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

log = logging.getLogger(__name__)


class VerifyResult(NamedTuple):
    max_abs_diff: float
    max_abs_logit: float
    batch: int
    seq_len: int


def hf_logits(hf_dir: str | Path, tokens_BxL: np.ndarray) -> np.ndarray:
    """fp32 logits of transformers' LlamaForCausalLM on `tokens_BxL`."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(tokens_BxL.astype(np.int64)))
    return out.logits.float().numpy()


def our_logits(hf_dir: str | Path, tokens_BxL: np.ndarray) -> np.ndarray:
    """fp32 logits of our model on the converted checkpoint (fp32 params and compute)."""
    import jax
    import jax.numpy as jnp

    from templar_jax.convert.from_hf import load_hf_params
    from templar_jax.model.api import apply

    cfg, params = load_hf_params(hf_dir, param_dtype="float32", dtype="float32")
    params = jax.tree.map(jnp.asarray, params)
    return np.asarray(apply(cfg, params, jnp.asarray(tokens_BxL, jnp.int32)))


def verify_hf_dir(hf_dir: str | Path, *, batch: int = 2, seq_len: int = 32,
                  seed: int = 0) -> VerifyResult:
    from templar_jax.convert.from_hf import read_hf_config
    from templar_jax.convert.hf_config import model_fields_from_hf

    fields = model_fields_from_hf(read_hf_config(hf_dir))
    seq_len = min(seq_len, fields["max_seq_len"])
    tokens = np.random.default_rng(seed).integers(0, fields["vocab_size"], (batch, seq_len))
    ours = our_logits(hf_dir, tokens)
    theirs = hf_logits(hf_dir, tokens)
    if ours.shape != theirs.shape:
        raise ValueError(f"logit shapes differ: ours {ours.shape}, transformers {theirs.shape}")
    diff = float(np.max(np.abs(ours - theirs)))
    result = VerifyResult(diff, float(np.max(np.abs(theirs))), batch, seq_len)
    log.info("verify %s: max |logit diff| %.3g (max |logit| %.3g) on %dx%d tokens",
             hf_dir, diff, result.max_abs_logit, batch, seq_len)
    return result
