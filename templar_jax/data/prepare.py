"""Text -> pretokenized shards: tokenize documents, pack them into a stream, cut shards.

Packing (SPEC sec. 6): each document's tokens are followed by one EOS; there is no BOS; the
documents are concatenated in input order into one stream, cut into samples of `seq_len` tokens
(a document may span samples and shards); the stream's tail is padded with EOS to a whole sample.
Shard k holds samples [k*samples_per_shard, (k+1)*samples_per_shard); the last may be shorter.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from templar_jax.data.errors import DataError
from templar_jax.data.format import write_shard
from templar_jax.data.manifest import Manifest, build_manifest, write_manifest
from templar_jax.data.tokenizer import eos_id_of, train_bpe

TEXT_SUFFIXES = (".txt", ".md", ".rst")
TOKENIZER_NAME = "tokenizer.json"


@dataclasses.dataclass(frozen=True)
class PrepareStats:
    n_documents: int
    n_tokens: int       # tokens written, EOS and padding included (= n_samples * seq_len)
    n_pad: int          # EOS tokens added to fill the last sample
    n_samples: int
    n_shards: int


def read_documents(inputs: Iterable[str | Path]) -> Iterator[tuple[str, str]]:
    """(name, text) documents from files and folders, in sorted path order.

    `.txt`/`.md`/`.rst` files are one document each; `.jsonl` files hold one JSON object per
    line with a "text" field (one document per line). Folders are searched recursively.
    """
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and f.suffix in TEXT_SUFFIXES + (".jsonl",)]
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    for f in sorted(set(files)):
        if f.suffix == ".jsonl":
            with open(f, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        text = json.loads(line)["text"]
                    except (ValueError, KeyError, TypeError):
                        raise DataError(f"{f}:{n}: not a JSON object with a 'text' field") from None
                    if not isinstance(text, str):
                        raise DataError(f"{f}:{n}: 'text' is not a string")
                    yield f"{f}:{n}", text
        else:
            try:
                yield str(f), f.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{f}: not UTF-8 text") from None


def write_shard_set(token_docs: Iterable[np.ndarray], out_dir: str | Path, *, seq_len: int,
                    samples_per_shard: int, eos_id: int, vocab_size: int | None = None,
                    extra_files: tuple[str, ...] = (),
                    on_document: Callable[[], None] | None = None) -> tuple[Manifest, PrepareStats]:
    """Pack token documents into shards in `out_dir` and write its manifest."""
    if seq_len <= 0 or samples_per_shard <= 0:
        raise DataError(f"seq_len {seq_len} and samples_per_shard {samples_per_shard} must be > 0")
    shard_tokens = seq_len * samples_per_shard
    out_dir = Path(out_dir)
    buffer: list[np.ndarray] = []
    buffered = 0
    shards: list[tuple[int, int]] = []
    n_docs = 0

    def flush(tokens: np.ndarray) -> None:
        write_shard(out_dir, len(shards), tokens, seq_len)
        shards.append((len(shards), tokens.size // seq_len))

    eos = np.array([eos_id], dtype=np.uint32)
    for doc in token_docs:
        buffer += [np.asarray(doc, dtype=np.uint32), eos]
        buffered += len(doc) + 1
        n_docs += 1
        while buffered >= shard_tokens:
            stream = np.concatenate(buffer)
            flush(stream[:shard_tokens])
            rest = stream[shard_tokens:]
            buffer, buffered = [rest], rest.size
        if on_document:
            on_document()
    n_pad = (-buffered) % seq_len
    if buffered:
        flush(np.concatenate(buffer + [np.full(n_pad, eos_id, dtype=np.uint32)]))
    if not shards:
        raise DataError("no documents to write")
    manifest = build_manifest(out_dir, seq_len, shards, eos_id=eos_id, vocab_size=vocab_size,
                              extra_files=extra_files)
    write_manifest(out_dir, manifest)
    stats = PrepareStats(n_docs, manifest.n_tokens, n_pad, manifest.n_samples, len(shards))
    return manifest, stats


def tokenize_documents(tok, texts: Iterable[str], batch_docs: int = 256) -> Iterator[np.ndarray]:
    """Token ids (uint32) of each text, batched through the Rust encoder; no special tokens added.

    Special-token strings inside the text (a literal "<eos>") are encoded as plain text, so a
    document can never inject an EOS; EOS comes only from packing.
    """
    previous = tok.encode_special_tokens
    tok.encode_special_tokens = True
    try:
        batch: list[str] = []
        for text in texts:
            batch.append(text)
            if len(batch) == batch_docs:
                yield from (np.asarray(e.ids, dtype=np.uint32) for e in tok.encode_batch(batch, add_special_tokens=False))
                batch = []
        if batch:
            yield from (np.asarray(e.ids, dtype=np.uint32) for e in tok.encode_batch(batch, add_special_tokens=False))
    finally:
        tok.encode_special_tokens = previous


def prepare_texts(texts: list[str], out_dir: str | Path, *, seq_len: int, samples_per_shard: int,
                  tokenizer=None, vocab_size: int = 4096, eos_id: int | None = None,
                  on_document: Callable[[], None] | None = None) -> tuple[Manifest, PrepareStats]:
    """Tokenize `texts` (training a BPE on them when `tokenizer` is None) and write shards.

    The tokenizer used is saved as `tokenizer.json` in `out_dir` and listed in the manifest.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = tokenizer if tokenizer is not None else train_bpe(texts, vocab_size)
    eos = eos_id_of(tok) if eos_id is None else eos_id
    tok.save(str(out_dir / TOKENIZER_NAME))
    docs = tokenize_documents(tok, texts)
    return write_shard_set(docs, out_dir, seq_len=seq_len, samples_per_shard=samples_per_shard,
                           eos_id=eos, vocab_size=tok.get_vocab_size(), extra_files=(TOKENIZER_NAME,),
                           on_document=on_document)
