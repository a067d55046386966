"""The data sets a run trains and evaluates on, from the run config's `data` section."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from templar_jax.data import ShardDataset, ensure_bundled_dataset
from templar_jax.data.tokenizer import eos_id_of, load_tokenizer


@dataclass
class DataSets:
    train: ShardDataset
    heldout: ShardDataset | None
    pad_id: int | None  # = EOS (SPEC sec. 6); None when the shards come without a tokenizer


def open_datasets(data_path: str, seq_len: int) -> DataSets:
    """`bundled` -> the bundled standard-library corpus; else a folder of shards, optionally
    with `train/` and `heldout/` subfolders."""
    root = ensure_bundled_dataset(seq_len=seq_len) if data_path == "bundled" else Path(data_path)
    train_dir = root / "train" if (root / "train").is_dir() else root
    heldout_dir = root / "heldout" if (root / "heldout").is_dir() else None
    train = ShardDataset(train_dir, seq_len)
    heldout = ShardDataset(heldout_dir, seq_len) if heldout_dir else None
    tok = next((p for p in (root / "tokenizer.json", train_dir / "tokenizer.json") if p.exists()), None)
    pad_id = eos_id_of(load_tokenizer(tok)) if tok else None
    return DataSets(train, heldout, pad_id)
