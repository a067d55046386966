"""The bundled demo corpus: Python standard library documentation, tokenized, no network needed.

Text sources (both ship with every CPython; PSF License, which permits redistribution and
derived works with the PSF notice; this corpus is used for demos and tests only):
  * `pydoc_data.topics.topics`: the language reference topics behind `help()` (a plain dict module);
  * docstrings of a fixed, sorted list of standard library modules (`STDLIB_MODULES`), read from
    their source files with `ast` -- nothing is imported or executed.
Documents: one per pydoc topic and one per docstring (module, class or function), in a fixed
order, each prefixed with its qualified name. Held-out split: a document goes to `heldout/` when
blake2b-64(its key) % 20 == 0 (stable, ~5%), else to `train/`.

The corpus depends on the Python minor version (docs change between releases), so the cache key
is (CORPUS_VERSION, Python major.minor, seq_len). The BPE tokenizer (4096 ids, "<eos>" = 0) is
trained on the train split only.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from templar_jax.data.errors import DataError
from templar_jax.data.prepare import TOKENIZER_NAME, prepare_texts
from templar_jax.data.tokenizer import train_bpe

log = logging.getLogger(__name__)

CORPUS_VERSION = 1
BUNDLED_VOCAB_SIZE = 4096
BUNDLED_SAMPLES_PER_SHARD = 1024
HELDOUT_EVERY = 20
STDLIB_MODULES = tuple(sorted("""
    _pydecimal argparse ast asyncio.events asyncio.tasks base64 bisect calendar cmd codecs
    collections configparser contextlib copy csv dataclasses datetime difflib doctest
    email.message enum fractions functools getopt gettext glob heapq hmac inspect ipaddress
    json json.decoder json.encoder locale logging logging.handlers mailbox optparse os pathlib
    pdb pprint queue random re shlex shutil smtplib socket statistics string subprocess tarfile
    tempfile textwrap threading timeit tokenize trace typing unittest.case unittest.mock
    urllib.parse urllib.request uuid warnings weakref zipfile
""".split()))


def _module_source(name: str) -> Path | None:
    root = Path(sysconfig.get_paths()["stdlib"])
    for p in (root / (name.replace(".", "/") + ".py"), root / name.replace(".", "/") / "__init__.py"):
        if p.is_file():
            return p
    return None


def _docstrings(name: str, source: str) -> Iterator[tuple[str, str]]:
    """(qualified name, docstring) for the module and its classes/functions, in source order."""
    def visit(node: ast.AST, qual: str) -> Iterator[tuple[str, str]]:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            yield qual, doc
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from visit(child, f"{qual}.{child.name}")
    yield from visit(ast.parse(source), name)


def bundled_documents() -> Iterator[tuple[str, str]]:
    """(key, text) of every bundled document, in a fixed order; keys are unique.

    A name defined twice in one scope (e.g. under if/else) gets "#2", "#3", ... on its key.
    """
    from pydoc_data.topics import topics  # a data-only module: one dict literal

    for name in sorted(topics):
        yield f"topic:{name}", f"{name}\n\n{topics[name].strip()}"
    seen: dict[str, int] = {}
    for mod in STDLIB_MODULES:
        path = _module_source(mod)
        if path is None:  # trimmed installs: skip, the cache key still separates Python builds
            log.warning("bundled corpus: stdlib module %s has no source file; skipped", mod)
            continue
        for qual, doc in _docstrings(mod, path.read_text(encoding="utf-8")):
            seen[qual] = seen.get(qual, 0) + 1
            key = f"doc:{qual}" if seen[qual] == 1 else f"doc:{qual}#{seen[qual]}"
            yield key, f"{qual}\n\n{doc}"


def is_heldout(key: str) -> bool:
    h = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    return h % HELDOUT_EVERY == 0


def default_cache_root() -> Path:
    base = os.environ.get("TEMPLAR_JAX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "templar-jax")
    return Path(base)


def bundled_dir_name(seq_len: int) -> str:
    return f"bundled-v{CORPUS_VERSION}-py{sys.version_info[0]}{sys.version_info[1]}-L{seq_len}"


def build_bundled_dataset(out: str | Path, seq_len: int = 128,
                          on_document: Callable[[], None] | None = None) -> dict:
    """Write the bundled corpus to `out` (train/, heldout/, tokenizer.json, corpus.json); returns its info."""
    t0 = time.perf_counter()
    out = Path(out)
    train_texts, heldout_texts = [], []
    for key, text in bundled_documents():
        (heldout_texts if is_heldout(key) else train_texts).append(text)
    tok = train_bpe(train_texts, BUNDLED_VOCAB_SIZE)
    if tok.get_vocab_size() != BUNDLED_VOCAB_SIZE:
        raise DataError(f"bundled tokenizer has {tok.get_vocab_size()} ids, expected {BUNDLED_VOCAB_SIZE}")
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / TOKENIZER_NAME))
    info: dict = {"corpus_version": CORPUS_VERSION, "python": sys.version.split()[0], "seq_len": seq_len,
                  "vocab_size": BUNDLED_VOCAB_SIZE, "eos_id": 0,
                  "licence": "Python Software Foundation License (CPython documentation and docstrings)"}
    for split, texts in (("train", train_texts), ("heldout", heldout_texts)):
        _, stats = prepare_texts(texts, out / split, seq_len=seq_len, tokenizer=tok,
                                 samples_per_shard=BUNDLED_SAMPLES_PER_SHARD, on_document=on_document)
        info[split] = {"documents": stats.n_documents, "tokens": stats.n_tokens,
                       "samples": stats.n_samples, "shards": stats.n_shards, "pad_tokens": stats.n_pad}
    info["build_seconds"] = round(time.perf_counter() - t0, 2)
    (out / "corpus.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def ensure_bundled_dataset(cache_dir: str | Path | None = None, seq_len: int = 128) -> Path:
    """The bundled corpus folder for `seq_len`, built once and cached.

    Returns a folder with `train/` and `heldout/` shard sets (each with `manifest.json`) and
    `tokenizer.json`. Safe under concurrent callers: each builds in a private temporary folder
    and renames it into place; the loser of the race discards its copy.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    final = root / bundled_dir_name(seq_len)
    if (final / "corpus.json").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        info = build_bundled_dataset(tmp, seq_len)
        try:
            os.rename(tmp, final)
            log.info("bundled corpus built in %.1fs at %s: %d train samples", info["build_seconds"],
                     final, info["train"]["samples"])
        except OSError:
            if not (final / "corpus.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final
