"""What a miner puts in its bucket each window, as a part handed to the miner.

The miner calls `prepare` during the window (its time counts as compute) and `finalize` once the
upload opens; the bytes `finalize` returns are uploaded (None: nothing this window). The honest
`Upload` encodes the miner's own compressed pseudo-gradient and uploads it unchanged. The demo's
adversaries (`templar_jax.demo.behaviors`) are other uploads handed to the same honest miner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jax

from templar_jax.sparseloco import Payload
from templar_jax.wire import decode, encode

if TYPE_CHECKING:  # the miner imports this module; the hooks only receive one
    from templar_jax.neurons.miner import Miner


@dataclass(frozen=True)
class PayloadCodec:
    """The run's wire format: a payload + metadata <-> bytes, validated against the model."""

    expected: Any
    chunk: int
    topk: int
    index_coding: str

    def encode(self, payload: Payload, meta: dict) -> bytes:
        return encode(jax.device_get(payload), meta, expected=self.expected, index_coding=self.index_coding,
                      chunk=self.chunk, topk=self.topk)

    def decode(self, data: bytes) -> tuple[Payload, dict]:
        return decode(data, self.expected, chunk=self.chunk, topk=self.topk)


class Upload:
    """The honest upload: the miner's own payload, encoded."""

    name = "honest"

    def prepare(self, miner: "Miner", payload: Payload, meta: dict) -> bytes:
        return miner.codec.encode(payload, meta)

    def finalize(self, miner: "Miner", window: int, global_step: int, data: bytes) -> bytes | None:
        return data

    def __str__(self) -> str:
        return self.name
