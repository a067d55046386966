"""SparseLoCo (SPEC sec. 2): chunked top-k + 2-bit quantization with error feedback, the
production aggregation rule, and the outer SGD step; pure JAX, sharding-aware."""

from templar_jax.sparseloco.aggregate import (
    AggregationError,
    aggregate,
    aggregate_tensor,
    densify,
    median_norms,
    payload_norms,
)
from templar_jax.sparseloco.compress import (
    CompressionConfigError,
    compress_tensor,
    decompress_tensor,
    null_payload,
)
from templar_jax.sparseloco.geometry import ChunkGeometry, chunk_geometry, split
from templar_jax.sparseloco.payload import Payload, TensorPayload
from templar_jax.sparseloco.transform import (
    SparseLoCoState,
    outer_optimizer,
    outer_step,
    payload_bytes_reference,
    sparseloco,
)
from templar_jax.sparseloco.sharded import ShardPlan, ef_compress_sharded, plan_shards
from templar_jax.sparseloco.sharded_aggregate import aggregate_tensor_sharded
from templar_jax.sparseloco.tree import batch_dims_from_names

__all__ = [
    "AggregationError", "ChunkGeometry", "ShardPlan", "aggregate_tensor_sharded",
    "ef_compress_sharded", "plan_shards", "CompressionConfigError", "Payload", "SparseLoCoState",
    "TensorPayload", "aggregate", "aggregate_tensor", "batch_dims_from_names", "chunk_geometry",
    "compress_tensor", "decompress_tensor", "densify", "median_norms", "null_payload",
    "outer_optimizer", "outer_step", "payload_bytes_reference", "payload_norms", "sparseloco",
    "split",
]
