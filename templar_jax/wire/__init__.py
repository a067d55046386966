"""templar_jax.wire: safe, compact binary format for SparseLoCo payloads (SPEC sec. 2.5)."""

from templar_jax.wire.errors import PayloadError
from templar_jax.wire.expected import ExpectedTable, ExpectedTensor, default_batch_dims, expected_table
from templar_jax.wire.format import decode, encode
from templar_jax.wire.layout import INDEX_CODINGS, MAGIC, VERSION, max_payload_bytes, tensor_layout

__all__ = [
    "INDEX_CODINGS",
    "MAGIC",
    "VERSION",
    "ExpectedTable",
    "ExpectedTensor",
    "PayloadError",
    "decode",
    "default_batch_dims",
    "encode",
    "expected_table",
    "max_payload_bytes",
    "tensor_layout",
]
