"""Publish a prepared data folder to a bucket (`prepare-data --upload URL`).

The folder is what `prepare-data` writes: one shard set at its root, or shard sets one level
down (`train/`, `heldout/`) beside loose files such as `tokenizer.json`. Every file a manifest
lists is checked against it (size and sha256) before it leaves, and each set's `manifest.json`
goes up last, so a reader that finds a manifest finds every file it lists (an interrupted
upload leaves no manifest, or the previous one, behind).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from templar_jax.data.errors import DataError
from templar_jax.data.manifest import MANIFEST_NAME, check_file, read_manifest


@dataclass(frozen=True)
class UploadStats:
    objects: int
    bytes: int
    seconds: float


def upload_plan(folder: str | Path) -> list[tuple[Path, str]]:
    """(local file, object key) in upload order: each set's files, then its manifest; loose files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    sets = [folder] if (folder / MANIFEST_NAME).is_file() else sorted(
        d for d in folder.iterdir() if d.is_dir() and (d / MANIFEST_NAME).is_file())
    if not sets:
        raise DataError(f"{folder}: no {MANIFEST_NAME} at its root or in a subfolder; nothing to upload")
    plan: list[tuple[Path, str]] = []
    for d in sets:
        prefix = "" if d == folder else f"{d.name}/"
        manifest = read_manifest(d)
        for name, entry in sorted(manifest.files.items()):
            check_file(d / name, entry, verify_hash=True)
            plan.append((d / name, prefix + name))
        plan.append((d / MANIFEST_NAME, prefix + MANIFEST_NAME))
    if folder not in sets:
        plan += [(p, p.name) for p in sorted(folder.iterdir()) if p.is_file()]
    return plan


def upload_shard_sets(folder: str | Path, bucket, *, on_file=None) -> UploadStats:
    """Upload `folder` (see `upload_plan`) to `bucket` (a `templar_jax.storage.Bucket` opened at
    the destination URL); `on_file(key, nbytes)` after each object."""
    t0 = time.perf_counter()
    total = 0
    plan = upload_plan(folder)
    for path, key in plan:
        data = path.read_bytes()
        bucket.put(key, data)
        total += len(data)
        if on_file is not None:
            on_file(key, len(data))
    return UploadStats(len(plan), total, time.perf_counter() - t0)
