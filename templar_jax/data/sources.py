"""Open a run's shard sets wherever they live: a folder, file://, gs:// or s3:// (cached locally).

Layout, the same on disk and in a bucket: either one shard set at the root (`manifest.json` +
shards, what `prepare-data --input` writes) or `train/` and an optional `heldout/` shard set
under it (what `prepare-data --bundled` writes).

- A folder or `file://PATH` is read in place (sizes checked against the manifest).
- `gs://BUCKET/PREFIX` and `s3://BUCKET/PREFIX` are read through `templar_jax.storage.Bucket`
  into a local cache (`remote.ShardCache`: manifest hashes checked on every download, partial
  downloads resumed, the next shard prefetched in the background). The default cache folder is
  `{cache root}/data/{hash of the URL}` under the templar-jax cache root.

The pad id (= EOS, SPEC sec. 6) is the train manifest's `eos_id`, else the tokenizer's EOS; a
tokenizer is found beside the shards (folder) or fetched when a manifest lists `tokenizer.json`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from templar_jax.data.bundled import default_cache_root, ensure_bundled_dataset
from templar_jax.data.dataset import ShardDataset
from templar_jax.data.errors import DataError, ManifestError, ShardFetchError
from templar_jax.data.manifest import MANIFEST_NAME, read_manifest
from templar_jax.data.prepare import TOKENIZER_NAME
from templar_jax.data.tokenizer import eos_id_of, load_tokenizer

BUCKET_SCHEMES = ("gs://", "s3://")
SPLITS = ("train", "heldout")


@dataclass
class ShardSets:
    """The train and (optional) held-out shard sets of one data location."""

    train: ShardDataset
    heldout: ShardDataset | None
    pad_id: int | None  # = EOS; None when neither manifest nor tokenizer names one
    tokenizer_path: Path | None  # a local tokenizer.json, when there is one


def is_bucket_url(path: str) -> bool:
    return str(path).startswith(BUCKET_SCHEMES)


def default_cache_dir(url: str) -> Path:
    """Where the shards of bucket `url` are cached unless the run config names a folder."""
    digest = hashlib.blake2b(url.rstrip("/").encode(), digest_size=8).hexdigest()
    return default_cache_root() / "data" / digest


def open_bucket(url: str, *, endpoint: str | None = None, credentials=None):
    """`templar_jax.storage.Bucket` at `url` (an R2 endpoint gets R2's region, "auto")."""
    from templar_jax.storage import Bucket

    region = "auto" if endpoint and "r2.cloudflarestorage.com" in endpoint else None
    return Bucket.open(url, credentials, endpoint=endpoint, region=region)


def open_shard_sets(path: str, seq_len: int, *, cache_dir: str | Path | None = None,
                    endpoint: str | None = None, credentials=None, prefetch: bool = True) -> ShardSets:
    """`path`: 'bundled', a folder, `file://PATH`, `gs://...` or `s3://...` (see module doc).

    endpoint / credentials (`templar_jax.storage.S3Credentials`): s3:// only.
    """
    if is_bucket_url(path):
        return _open_bucket(path, seq_len, cache_dir=cache_dir, endpoint=endpoint,
                            credentials=credentials, prefetch=prefetch)
    if path == "bundled":
        root = ensure_bundled_dataset(seq_len=seq_len)
    else:
        root = Path(path[len("file://"):] if path.startswith("file://") else path)
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist")
    train_dir = root / "train" if (root / "train").is_dir() else root
    heldout_dir = root / "heldout" if (root / "heldout").is_dir() else None
    train = ShardDataset(train_dir, seq_len)
    heldout = ShardDataset(heldout_dir, seq_len) if heldout_dir else None
    tok = next((p for p in (root / TOKENIZER_NAME, train_dir / TOKENIZER_NAME) if p.exists()), None)
    manifest = read_manifest(train_dir)
    return ShardSets(train, heldout, _pad_id(manifest.eos_id if manifest else None, tok), tok)


def _pad_id(manifest_eos: int | None, tokenizer: Path | None) -> int | None:
    if manifest_eos is not None:
        return int(manifest_eos)
    return eos_id_of(load_tokenizer(tokenizer)) if tokenizer is not None else None


def _open_bucket(url: str, seq_len: int, *, cache_dir, endpoint, credentials, prefetch: bool) -> ShardSets:
    from templar_jax.storage import StorageError

    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir(url)
    try:
        bucket = open_bucket(url, endpoint=endpoint, credentials=credentials)
        if bucket.head(MANIFEST_NAME) is not None:
            layout = {"train": ""}
        elif bucket.head(f"train/{MANIFEST_NAME}") is not None:
            layout = {s: s for s in SPLITS if s == "train" or bucket.head(f"{s}/{MANIFEST_NAME}") is not None}
        else:
            raise ManifestError(f"{url}: no {MANIFEST_NAME} at its root or under train/")
    except StorageError as err:
        raise ShardFetchError(f"{url}: {err.reason}") from err
    sets = {split: ShardDataset.from_source(bucket, prefix, cache_root / split, seq_len, prefetch=prefetch)
            for split, prefix in layout.items()}
    train = sets["train"]
    manifest = train.cache.manifest()
    tok = train.cache.fetch(TOKENIZER_NAME) if TOKENIZER_NAME in manifest.files else None
    return ShardSets(train, sets.get("heldout"), _pad_id(manifest.eos_id, tok), tok)
