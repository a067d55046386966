"""`manifest.json`: what a shard set contains, with sizes and sha256 of every file.

prepare-data writes it; readers check local files against it (sizes always, sha256 on download
or on request), so a truncated, corrupted or substituted file is a clear `HashMismatch` (and a
bad manifest a `ManifestError`; both are `DataError`s), never a silent wrong sample. JSON layout (version 1):

    {"format": "templar-jax-shards", "version": 1, "seq_len": 128, "token_dtype": "uint32",
     "eos_id": 0, "vocab_size": 4096, "n_tokens": 4096, "n_samples": 32,
     "shards": [{"index": 0, "n_samples": 32}],
     "files": {"train_000000.npy": {"size": 16512, "sha256": "..."}, ...}}
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from templar_jax.data.errors import HashMismatch, ManifestError
from templar_jax.data.format import sample_ids_name, train_name

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "templar-jax-shards"
FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    seq_len: int
    shards: tuple[tuple[int, int], ...]  # (shard index, n_samples), ascending index
    files: dict[str, FileEntry]
    eos_id: int | None = None
    vocab_size: int | None = None

    @property
    def n_samples(self) -> int:
        return sum(n for _, n in self.shards)

    @property
    def n_tokens(self) -> int:
        return self.n_samples * self.seq_len

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "seq_len": self.seq_len,
            "token_dtype": "uint32", "eos_id": self.eos_id, "vocab_size": self.vocab_size,
            "n_tokens": self.n_tokens, "n_samples": self.n_samples,
            "shards": [{"index": i, "n_samples": n} for i, n in self.shards],
            "files": {k: {"size": v.size, "sha256": v.sha256} for k, v in sorted(self.files.items())},
        }
        return json.dumps(doc, indent=1) + "\n"


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            h.update(block)
    return h.hexdigest()


def _int(doc: dict, key: str, where: str, minimum: int = 0) -> int:
    v = doc.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ManifestError(f"{where}: '{key}' must be an integer >= {minimum}, got {v!r}")
    return v


def parse_manifest(data: bytes | str) -> Manifest:
    """Parse and validate manifest JSON; any structural problem is a `ManifestError`."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ManifestError(f"{MANIFEST_NAME}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ManifestError(f"{MANIFEST_NAME}: not a {FORMAT_NAME} manifest")
    if doc.get("version") != FORMAT_VERSION:
        raise ManifestError(f"{MANIFEST_NAME}: unsupported version {doc.get('version')!r}")
    if doc.get("token_dtype", "uint32") != "uint32":
        raise ManifestError(f"{MANIFEST_NAME}: token_dtype {doc.get('token_dtype')!r} is not uint32")
    seq_len = _int(doc, "seq_len", MANIFEST_NAME, 1)
    files_doc = doc.get("files")
    if not isinstance(files_doc, dict):
        raise ManifestError(f"{MANIFEST_NAME}: 'files' must be an object")
    files = {}
    for name, entry in files_doc.items():
        if not isinstance(entry, dict) or "/" in name or "\\" in name or name.startswith("."):
            raise ManifestError(f"{MANIFEST_NAME}: bad file entry {name!r}")
        sha = entry.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise ManifestError(f"{MANIFEST_NAME}: file {name!r} has no valid sha256")
        files[name] = FileEntry(_int(entry, "size", name), sha)
    shards_doc = doc.get("shards")
    if not isinstance(shards_doc, list) or not shards_doc:
        raise ManifestError(f"{MANIFEST_NAME}: 'shards' must be a non-empty list")
    shards = []
    for s in shards_doc:
        if not isinstance(s, dict):
            raise ManifestError(f"{MANIFEST_NAME}: bad shard entry {s!r}")
        idx, n = _int(s, "index", "shard entry"), _int(s, "n_samples", "shard entry", 1)
        for name in (train_name(idx), sample_ids_name(idx)):
            if name not in files:
                raise ManifestError(f"{MANIFEST_NAME}: shard {idx} lists no entry for {name}")
        shards.append((idx, n))
    if [i for i, _ in shards] != sorted({i for i, _ in shards}):
        raise ManifestError(f"{MANIFEST_NAME}: shard indices must be unique and ascending")
    eos, vocab = doc.get("eos_id"), doc.get("vocab_size")
    return Manifest(seq_len, tuple(shards), files,
                    eos if isinstance(eos, int) else None, vocab if isinstance(vocab, int) else None)


def read_manifest(folder: str | Path) -> Manifest | None:
    """The folder's manifest, or None when it has none."""
    path = Path(folder) / MANIFEST_NAME
    if not path.exists():
        return None
    return parse_manifest(path.read_bytes())


def build_manifest(folder: str | Path, seq_len: int, shards: list[tuple[int, int]], *,
                   eos_id: int | None = None, vocab_size: int | None = None,
                   extra_files: tuple[str, ...] = ()) -> Manifest:
    """Hash the shard files (and `extra_files`, e.g. tokenizer.json) that are in `folder`."""
    folder = Path(folder)
    names = [n for i, _ in shards for n in (train_name(i), sample_ids_name(i))] + list(extra_files)
    files = {n: FileEntry((folder / n).stat().st_size, file_sha256(folder / n)) for n in names}
    return Manifest(seq_len, tuple(sorted(shards)), files, eos_id, vocab_size)


def write_manifest(folder: str | Path, manifest: Manifest) -> Path:
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(manifest.to_json())
    os.replace(tmp, path)
    return path


def check_file(path: str | Path, entry: FileEntry, *, verify_hash: bool, sha256: str | None = None) -> None:
    """Raise `HashMismatch` unless the file has the manifest's size (and sha256 if asked;
    `sha256`: the file's digest when the caller already has it, e.g. hashed while downloading)."""
    path = Path(path)
    if not path.exists():
        raise HashMismatch(f"{path.name}: listed in {MANIFEST_NAME} but missing")
    size = path.stat().st_size
    if size != entry.size:
        raise HashMismatch(f"{path.name}: size {size} != {entry.size} in {MANIFEST_NAME} "
                        f"({'truncated' if size < entry.size else 'too long'})")
    if verify_hash and (digest := sha256 or file_sha256(path)) != entry.sha256:
        raise HashMismatch(f"{path.name}: sha256 {digest[:16]}... != {entry.sha256[:16]}... in {MANIFEST_NAME}")
