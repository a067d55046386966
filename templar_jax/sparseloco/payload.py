"""The compressed pseudo-gradient of one parameter tensor, as exchanged between peers.

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

from typing import Any, NamedTuple


class TensorPayload(NamedTuple):
    idx: Any
    codes: Any
    shift: Any
    scale: Any
    lut: Any


# A whole peer's payload: flat parameter name ("layers/attn/wq", ...) -> TensorPayload.
Payload = dict[str, TensorPayload]
