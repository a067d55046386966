"""Next-token cross-entropy with pad/EOS targets masked.

SPEC sec. 6: "Documents end with EOS; no BOS; pad = EOS; pad targets ignored." Because pad and
EOS share one id, a target cannot be told apart as "pad" or "end of document" by its id. We
follow the reference (labels equal to the pad id -> ignored), i.e. **every target equal to the
pad/EOS id is masked**; the model is never trained to emit EOS. Inputs are not masked
(attention stays plainly causal across packed documents, as in the reference).

A batch row holds `seq_len` tokens: inputs are row[:-1], targets row[1:].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from templar_jax.model import apply
from templar_jax.model.config import ModelConfig


def token_loss_sum(
    logits_BxLxV: jax.Array, targets_BxL: jax.Array, pad_id: int | None
) -> tuple[jax.Array, jax.Array]:
    """(sum of per-token NLL over unmasked targets, number of unmasked targets), fp32."""
    logits = logits_BxLxV.astype(jnp.float32)
    targets = targets_BxL.astype(jnp.int32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    picked_BxL = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll_BxL = lse_BxL - picked_BxL
    mask_BxL = jnp.ones_like(nll_BxL) if pad_id is None else (targets != pad_id).astype(jnp.float32)
    return jnp.sum(nll_BxL * mask_BxL), jnp.sum(mask_BxL)


def loss_fn(
    params: dict,
    batch_BxL1: jax.Array,
    model_cfg: ModelConfig,
    pad_id: int | None = None,
    mesh: Mesh | None = None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Mean next-token loss over unmasked targets; aux = (loss_sum, n_targets) for accumulation."""
    inputs, targets = batch_BxL1[:, :-1], batch_BxL1[:, 1:]
    logits = apply(model_cfg, params, inputs, mesh)
    loss_sum, n = token_loss_sum(logits, targets, pad_id)
    return loss_sum / jnp.maximum(n, 1.0), (loss_sum, n)
