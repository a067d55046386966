"""The compressed pseudo-gradient of one parameter tensor, as exchanged between peers, and the
two layouts the algorithm works in (batch dims flattened; peers stacked).

This is the contract between `sparseloco` (produces/consumes it), `wire` (encodes it to bytes)
and the neurons. Arrays may be jax or numpy arrays.

Shapes, for a parameter of shape `batch_shape + tensor_shape` (batch_shape is `(layers,)` for the
scanned layer stack, `()` otherwise; each leading index is one reference tensor with its own
quantizer statistics, exactly as the reference treats per-layer tensors):
  idx_CxK   int32  [*batch, num_chunks, k]   chunk-local indices, sorted ascending per chunk
  codes_CxK uint8  [*batch, num_chunks, k]   2-bit codes (0..3), aligned with idx
  shift     f32    [*batch]
  scale     f32    [*batch]
  lut       f32    [*batch, 4]               decode: value = lut[code] + shift
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco.geometry import flat_batch


class TensorPayload(NamedTuple):
    idx: Any
    codes: Any
    shift: Any
    scale: Any
    lut: Any


# A whole peer's payload: flat parameter name ("layers/attn/wq", ...) -> TensorPayload.
Payload = dict[str, TensorPayload]


def flat_payload(p: TensorPayload, batch_shape) -> TensorPayload:
    """Payload arrays as jax arrays with the batch dims flattened to one leading B axis and the
    chunks to one C axis: idx/codes [B, C, k] (also from a shard's [*batch, Y, X, k] blocks),
    shift/scale [B], lut [B, N]."""
    b = flat_batch(batch_shape)
    idx = jnp.asarray(p.idx).astype(jnp.int32)
    k = idx.shape[-1]
    return TensorPayload(
        idx=idx.reshape(b, -1, k),
        codes=jnp.asarray(p.codes).reshape(b, -1, k),
        shift=jnp.asarray(p.shift, jnp.float32).reshape(b),
        scale=jnp.asarray(p.scale, jnp.float32).reshape(b),
        lut=jnp.asarray(p.lut, jnp.float32).reshape(b, -1),
    )


def unflatten_payload(p: TensorPayload, batch_shape) -> TensorPayload:
    """Inverse of `flat_payload`'s reshapes: the leading B axis back to `batch_shape`."""
    return TensorPayload(
        idx=p.idx.reshape(batch_shape + p.idx.shape[1:]),
        codes=p.codes.reshape(batch_shape + p.codes.shape[1:]),
        shift=p.shift.reshape(batch_shape),
        scale=p.scale.reshape(batch_shape),
        lut=p.lut.reshape(batch_shape + p.lut.shape[1:]),
    )


def peer_bucket(r: int) -> int:
    """Peers are padded to the next power of two so the compiled aggregation is reused as the
    number of valid peers changes from window to window."""
    return 1 << max(0, r - 1).bit_length()


def stack_payloads(payloads: Sequence[TensorPayload], pad_to: int | None = None) -> TensorPayload:
    """Stack R payloads on a new leading axis (host-side; NumPy or jax arrays), zero-padded to
    `pad_to` peers."""
    fields = []
    for f in TensorPayload._fields:
        arr = np.stack([np.asarray(getattr(p, f)) for p in payloads])
        if pad_to is not None and pad_to > arr.shape[0]:
            pad = np.zeros((pad_to - arr.shape[0],) + arr.shape[1:], arr.dtype)
            arr = np.concatenate([arr, pad])
        fields.append(arr)
    return TensorPayload(*fields)


def stack_peers(payloads: Sequence[TensorPayload]) -> tuple[TensorPayload, np.ndarray]:
    """(payloads stacked and padded to their `peer_bucket`, valid_R: True for the real peers)."""
    padded = peer_bucket(len(payloads))
    return stack_payloads(payloads, pad_to=padded), np.arange(padded) < len(payloads)
