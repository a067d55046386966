"""Held-out loss, perplexity and bits per byte of a model on a shard set.

The loss is exactly the training loss (`templar_jax.train.loss.loss_fn`): next-token NLL with
every pad/EOS target masked (SPEC sec. 6), summed over all unmasked targets of the evaluated
samples and divided once at the end (a token-weighted mean, not a mean of batch means).
Samples are read in index order from 0, so a run is deterministic and `--batches N` always
means "the first N * batch_size samples". The last batch is topped up with all-pad rows
(no unmasked target, so they count for nothing) to keep one compiled shape.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from templar_jax.evaluate.errors import EvalError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalData:
    """One split of a shard set, with what the metrics need to know about its tokens."""

    dataset: object  # templar_jax.data.ShardDataset
    folder: Path | str  # the split's folder, or the bucket URL it was read from
    pad_id: Optional[int]  # = EOS; None when neither manifest nor tokenizer names one
    byte_lengths: Optional[np.ndarray]  # int64 [vocab]; None without a tokenizer (no bpb)
    tokenizer_path: Optional[Path]


@dataclass(frozen=True)
class HeldoutResult:
    loss: float  # nats per unmasked target token
    perplexity: float
    bits_per_byte: Optional[float]
    n_samples: int
    n_targets: int
    n_bytes: Optional[int]
    total_nats: float
    seq_len: int
    split: str
    data: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _find_tokenizer(root: Path, split_dir: Path) -> Optional[Path]:
    for p in (split_dir / "tokenizer.json", root / "tokenizer.json"):
        if p.is_file():
            return p
    return None


def _open_bucket_split(url: str, split: str, seq_len: Optional[int], pad_id: Optional[int],
                      cache_dir) -> EvalData:
    from templar_jax.data import DataError
    from templar_jax.data.sources import open_shard_sets
    from templar_jax.data.tokenizer import load_tokenizer
    from templar_jax.evaluate.byte_counts import token_byte_lengths

    if seq_len is None:
        raise EvalError(f"{url}: a bucket's shards need a seq_len")
    if split not in ("heldout", "train"):
        raise EvalError(f"{url}: split must be heldout or train, got {split!r}")
    try:
        sets = open_shard_sets(url, seq_len, cache_dir=cache_dir, prefetch=False)
    except DataError as err:
        raise EvalError(f"cannot open shards at {url}: {err}") from None
    dataset = sets.heldout if split == "heldout" and sets.heldout is not None else sets.train
    tok = load_tokenizer(sets.tokenizer_path) if sets.tokenizer_path else None
    return EvalData(dataset, url, sets.pad_id if pad_id is None else pad_id,
                    token_byte_lengths(tok) if tok is not None else None, sets.tokenizer_path)


def open_eval_data(data: str, *, split: str = "heldout", seq_len: Optional[int] = None,
                   pad_id: Optional[int] = None, cache_dir=None) -> EvalData:
    """`data` = "bundled" (the demo corpus), a shard folder (with or without split subfolders)
    or a gs:// / s3:// URL of one (`templar_jax.data.sources`; cached in `cache_dir`).

    seq_len: taken from the folder's manifest when None (required for "bundled", whose cache
    folder depends on it, and for a bucket). pad_id: the manifest's eos_id, else the
    tokenizer's EOS, unless given.
    """
    from templar_jax.data import DataError, ShardDataset, ensure_bundled_dataset
    from templar_jax.data.manifest import read_manifest
    from templar_jax.data.sources import is_bucket_url
    from templar_jax.data.tokenizer import eos_id_of, load_tokenizer
    from templar_jax.evaluate.byte_counts import token_byte_lengths

    if is_bucket_url(data):
        return _open_bucket_split(data, split, seq_len, pad_id, cache_dir)
    if data == "bundled":
        if seq_len is None:
            raise EvalError("the bundled corpus needs a seq_len")
        root = ensure_bundled_dataset(seq_len=seq_len)
    else:
        root = Path(data)
        if not root.is_dir():
            raise EvalError(f"data folder {root} does not exist")
    split_dir = root / split if (root / split).is_dir() else root
    if split_dir == root and split != "heldout" and (root / "heldout").is_dir():
        raise EvalError(f"{root} has no {split}/ split")
    try:
        manifest = read_manifest(split_dir)
    except DataError as err:
        raise EvalError(f"{split_dir}: bad manifest ({err})") from None
    if seq_len is None:
        if manifest is None:
            raise EvalError(f"{split_dir} has no manifest.json; pass --seq-len")
        seq_len = manifest.seq_len
    try:
        dataset = ShardDataset(split_dir, seq_len)
    except DataError as err:
        raise EvalError(f"cannot open shards in {split_dir}: {err}") from None
    tok_path = _find_tokenizer(root, split_dir)
    tok = load_tokenizer(tok_path) if tok_path else None
    if pad_id is None and manifest is not None and manifest.eos_id is not None:
        pad_id = int(manifest.eos_id)
    if pad_id is None and tok is not None:
        pad_id = eos_id_of(tok)
    lengths = token_byte_lengths(tok) if tok is not None else None
    return EvalData(dataset, split_dir, pad_id, lengths, tok_path)


@functools.lru_cache(maxsize=8)
def make_loss_sums(model_cfg, pad_id: Optional[int]) -> Callable:
    """jit(params, tokens_BxL1) -> (loss_sum, n_targets): the training loss's own sums.
    Cached per (config, pad id), so repeated evaluations compile once."""
    import jax

    from templar_jax.train.loss import loss_fn

    return jax.jit(lambda params, tokens: loss_fn(params, tokens, model_cfg, pad_id)[1])


def evaluate_shards(params, model_cfg, data: EvalData, *, batch_size: int = 8,
                    max_batches: Optional[int] = None, progress: Optional[Callable[[int, int], None]] = None,
                    loss_sums: Optional[Callable] = None, split: str = "heldout") -> HeldoutResult:
    """Loss (nats/token), perplexity and bits per byte over the first batches of `data`.

    `loss_sums` lets a caller reuse one compiled function over several evaluations.
    `progress(done, total)` is called after each batch.
    """
    import jax.numpy as jnp

    ds = data.dataset
    n_total = ds.n_samples
    n_batches = math.ceil(n_total / batch_size)
    if max_batches is not None:
        if max_batches < 1:
            raise EvalError(f"batches must be >= 1, got {max_batches}")
        n_batches = min(n_batches, max_batches)
    n_samples = min(n_total, n_batches * batch_size)
    if n_samples == 0:
        raise EvalError(f"{data.folder} holds no samples")
    fn = loss_sums or make_loss_sums(model_cfg, data.pad_id)
    total_nats, n_targets, n_bytes = 0.0, 0, 0
    for b in range(n_batches):
        idx = np.arange(b * batch_size, min((b + 1) * batch_size, n_samples))
        tokens = ds.samples(idx).astype(np.int32)
        if tokens.shape[0] < batch_size and data.pad_id is not None:
            filler = np.full((batch_size - tokens.shape[0], tokens.shape[1]), data.pad_id, np.int32)
            tokens = np.concatenate([tokens, filler])
        if tokens.max() >= model_cfg.vocab_size:
            raise EvalError(f"{data.folder}: token id {int(tokens.max())} >= model vocab {model_cfg.vocab_size}")
        loss_sum, n = fn(params, jnp.asarray(tokens))
        total_nats += float(loss_sum)
        n_targets += int(round(float(n)))
        if data.byte_lengths is not None:
            targets = tokens[:, 1:]
            keep = np.ones_like(targets, bool) if data.pad_id is None else targets != data.pad_id
            n_bytes += int(data.byte_lengths[targets[keep]].sum())
        if progress is not None:
            progress(b + 1, n_batches)
    if n_targets == 0:
        raise EvalError(f"{data.folder}: every target of the evaluated samples is pad/EOS")
    loss = total_nats / n_targets
    bpb = total_nats / math.log(2) / n_bytes if data.byte_lengths is not None and n_bytes else None
    return HeldoutResult(loss=loss, perplexity=math.exp(min(loss, 700.0)), bits_per_byte=bpb,
                         n_samples=int(n_samples), n_targets=n_targets,
                         n_bytes=n_bytes if data.byte_lengths is not None else None,
                         total_nats=total_nats, seq_len=ds.seq_len, split=split, data=str(data.folder))
