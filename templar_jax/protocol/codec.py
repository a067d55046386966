"""The run's wire format as one object: a payload + metadata <-> bytes, checked against the
model's parameter table with the run's chunk, top-k and index code (`templar_jax.wire`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping

from templar_jax.multihost.arrays import host_tree
from templar_jax.sparseloco import Payload
from templar_jax.wire import decode, encode, max_payload_bytes


@dataclass(frozen=True)
class PayloadCodec:
    expected: Any  # wire.ExpectedTable of the model
    chunk: int
    topk: int
    index_coding: str  # wire name: 'elias-fano' or 'twelve-bit'
    workers: int = 1  # threads decoding one payload (run config peers.decode_workers; same result)

    def encode(self, payload: Payload, meta: Mapping[str, Any]) -> bytes:
        return encode(host_tree(payload), meta, expected=self.expected, index_coding=self.index_coding,
                      chunk=self.chunk, topk=self.topk)

    @property
    def max_bytes(self) -> int:
        """The largest valid payload's size: a download bound."""
        return max_payload_bytes(self.expected, chunk=self.chunk, topk=self.topk)

    def decode(self, data: bytes, *, expected_meta: Mapping[str, Any] | None = None,
               names: Collection[str] | None = None) -> tuple[Payload, dict]:
        """Raises wire.PayloadError (only) for bad bytes or metadata other than `expected_meta`.
        `names`: only these tensors (of bytes a full decode already accepted; `wire.decode`)."""
        return decode(data, self.expected, chunk=self.chunk, topk=self.topk, expected_meta=expected_meta,
                      workers=self.workers, names=names)
