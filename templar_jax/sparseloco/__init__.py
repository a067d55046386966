"""SparseLoCo (SPEC sec. 2): chunked top-k + 2-bit quantization with error feedback, the
production aggregation rule, and the outer SGD step; pure JAX, sharding-aware, with Pallas
kernels as drop-in cores (`impl`, `kernel=KernelConfig(...)`)."""

from templar_jax.sparseloco.aggregate import aggregate, aggregate_tensor, aggregate_tensor_sharded
from templar_jax.sparseloco.compress import (
    compress_dense, compress_tensor, decompress_tensor, ef_compress_tensor, null_payload, topk_rows,
    topk_rows_of)
from templar_jax.sparseloco.densify import densify, median_norms, payload_norms
from templar_jax.sparseloco.dispatch import IMPLS, resolve_impl
from templar_jax.sparseloco.geometry import (
    ChunkGeometry, CompressionConfigError, chunk_geometry, split, tensor_geometry)
from templar_jax.sparseloco.kernels.config import KernelConfig, KernelConfigError
from templar_jax.sparseloco.overlap import rebase
from templar_jax.sparseloco.payload import Payload, TensorPayload, peer_bucket
from templar_jax.sparseloco.rules import RULES, AggregationError
from templar_jax.sparseloco.sharded import ShardPlan, plan_shards
from templar_jax.sparseloco.transform import (
    PayloadTransformation, SparseLoCoState, outer_optimizer, outer_step, payload_bytes_reference,
    sparseloco)
from templar_jax.sparseloco.tree import batch_dims_from_names

__all__ = [
    "IMPLS", "RULES", "AggregationError", "ChunkGeometry", "CompressionConfigError",
    "KernelConfig", "KernelConfigError", "Payload", "PayloadTransformation", "ShardPlan",
    "SparseLoCoState", "TensorPayload", "aggregate", "aggregate_tensor",
    "aggregate_tensor_sharded", "batch_dims_from_names", "chunk_geometry", "compress_dense", "compress_tensor",
    "decompress_tensor", "densify", "ef_compress_tensor", "median_norms", "null_payload",
    "outer_optimizer", "outer_step", "payload_bytes_reference", "payload_norms", "peer_bucket",
    "plan_shards", "rebase", "resolve_impl", "sparseloco", "split", "tensor_geometry",
]
