"""templar_jax.data: pretokenized shards, deterministic samplers, tokenizers, bundled corpus.

Public API (see docs/interfaces.md):
  ShardDataset(dir_or_files, seq_len)        .n_samples, .samples(indices), .sample_ids, .ids(indices)
  ShardDataset.from_source(source, prefix, cache_dir, seq_len)   shards in a bucket
  miner_pool, trained_indices, sample_digest, validator_own_indices, validator_random_indices,
  process_slice, local_batch                 samplers (SPEC sec. 5-6)
  ensure_bundled_dataset(cache_dir=None, seq_len=128) -> Path   stdlib-docs demo corpus
  prepare_texts, read_documents, write_shard_set, train_bpe, load_tokenizer
  DataError(reason)                           every bad-input error
"""

from templar_jax.data.bundled import ensure_bundled_dataset
from templar_jax.data.dataset import ShardDataset
from templar_jax.data.errors import DataError
from templar_jax.data.format import compute_sample_ids, sample_id, sample_ids_name, train_name, write_shard
from templar_jax.data.manifest import Manifest, parse_manifest, read_manifest
from templar_jax.data.prepare import PrepareStats, prepare_texts, read_documents, write_shard_set
from templar_jax.data.remote import ShardCache, ShardSource
from templar_jax.data.sampler import (
    local_batch,
    miner_pool,
    pool_seed,
    process_slice,
    sample_digest,
    trained_indices,
    validator_own_indices,
    validator_random_indices,
)
from templar_jax.data.tokenizer import EOS_ID, eos_id_of, load_tokenizer, train_bpe

__all__ = [
    "DataError", "EOS_ID", "Manifest", "PrepareStats", "ShardCache", "ShardDataset", "ShardSource",
    "compute_sample_ids", "ensure_bundled_dataset", "eos_id_of", "load_tokenizer", "local_batch",
    "miner_pool", "parse_manifest", "pool_seed", "prepare_texts", "process_slice", "read_documents",
    "read_manifest", "sample_digest", "sample_id", "sample_ids_name", "train_bpe", "train_name",
    "trained_indices", "validator_own_indices", "validator_random_indices", "write_shard",
    "write_shard_set",
]
