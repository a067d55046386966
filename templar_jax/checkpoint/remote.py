"""Publish / fetch checkpoints through a storage `Bucket` (file, GCS, S3/R2).

Orbax writes the checkpoint to a local step directory first (fast, atomic
rename); then every file is uploaded under `checkpoints/{version}/{window}/`,
then a manifest (`_MANIFEST.json`: path, size, sha256 of each file), and only
then the pointer `checkpoints/{version}/_LATEST.json` (SPEC sec. 3). A crash
anywhere before the pointer write leaves the pointer on the previous complete
checkpoint; a reader that follows the pointer finds a manifest whose files all
exist, and verifies each file's size and sha256 before trusting it.

Downloads land in `{dest_root}/{window}.partial/` and are renamed to
`{dest_root}/{window}/` when complete, so `LocalCheckpoints(dest_root)` can
restore them (with resharding) like any local checkpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Any, Optional

from templar_jax.checkpoint.local import CheckpointError
from templar_jax.data.manifest import file_sha256
from templar_jax.untrusted_json import json_int, loads_untrusted

log = logging.getLogger(__name__)

MANIFEST = "_MANIFEST.json"
MANIFEST_FORMAT = 1
MAX_JSON_BYTES = 16 * 1024 * 1024
_MIN_BYTES_PER_S = 5e6  # download-timeout floor rate for large files
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
MAX_FILE_BYTES = 1 << 50  # a manifest's size field beyond this is hostile, not a checkpoint


class RemoteCheckpointError(CheckpointError):
    """A remote checkpoint is missing, incomplete, or fails verification."""


def _keys():
    from templar_jax.storage import keys

    return keys


def _local_files(step_dir: Path) -> list[Path]:
    files = sorted(p for p in step_dir.rglob("*") if p.is_file())
    if not files:
        raise RemoteCheckpointError(f"{step_dir}: no files to publish")
    return files


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _upload_files(bucket, prefix: str, step_dir: Path, files: list[Path]) -> list[dict]:
    async def one(path: Path) -> dict:
        rel = path.relative_to(step_dir).as_posix()
        # hashed while it uploads (a large file in parts, never read whole): both reads of the
        # file run together, so the second comes from the page cache
        digest, _ = await asyncio.gather(asyncio.to_thread(file_sha256, path, 16 << 20),
                                         bucket.aput_file(prefix + rel, path))
        return {"path": rel, "size": path.stat().st_size, "sha256": digest}

    return list(await asyncio.gather(*(one(p) for p in files)))


def publish_checkpoint(bucket, version: str, window: int, step_dir: str | Path, *,
                       info: Optional[dict[str, Any]] = None,
                       keep: Optional[int] = None) -> dict[str, Any]:
    """Upload a finished local step directory as window `window`; returns the pointer written.

    `info` (JSON-able, e.g. global_step) is copied into manifest and pointer.
    `keep`: after the pointer moved, delete older windows of this version beyond
    the newest `keep` (never the one just published).
    """
    keys = _keys()
    step_dir = Path(step_dir)
    prefix = keys.checkpoint_prefix(version, window)
    files = _local_files(step_dir)
    t0 = time.monotonic()
    entries = asyncio.run(_upload_files(bucket, prefix, step_dir, files))
    manifest = {"format": MANIFEST_FORMAT, "version": version, "window": int(window),
                "files": entries, "info": dict(info or {})}
    bucket.put(prefix + MANIFEST, json.dumps(manifest, indent=1).encode())
    pointer = {"version": version, "window": int(window), "manifest": prefix + MANIFEST,
               "info": dict(info or {}), "published_at": time.time()}
    bucket.put(keys.checkpoint_latest_key(version), json.dumps(pointer).encode())  # last
    total = sum(e["size"] for e in entries)
    log.info("published checkpoint window %d: %d files, %.1f MB in %.1f s", window, len(entries),
             total / 1e6, time.monotonic() - t0)
    if keep is not None:
        prune_remote(bucket, version, keep=keep, protect=window)
    return pointer


def remote_windows(bucket, version: str) -> list[int]:
    """Windows with any object under `checkpoints/{version}/` (complete or not)."""
    root = f"checkpoints/{version}/"
    windows = set()
    for key in bucket.list(root):
        head = key[len(root):].split("/", 1)[0]
        if head.isdigit():
            windows.add(int(head))
    return sorted(windows)


def prune_remote(bucket, version: str, *, keep: int, protect: Optional[int] = None) -> list[int]:
    """Delete all but the newest `keep` windows (and never `protect` or the pointer's window)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    latest = read_latest(bucket, version)
    protected = {protect, latest["window"] if latest else None}
    windows = remote_windows(bucket, version)
    doomed = [w for w in windows[:-keep] if w not in protected]
    keys = _keys()
    for window in doomed:
        for key in bucket.list(keys.checkpoint_prefix(version, window)):
            bucket.delete(key)
    if doomed:
        log.info("pruned remote checkpoint windows %s", doomed)
    return doomed


def _get_json(bucket, key: str) -> Any:
    from templar_jax.storage.errors import ObjectNotFound, ObjectTooLarge

    try:
        raw = bucket.get(key, max_bytes=MAX_JSON_BYTES)
    except ObjectNotFound:
        return None
    except ObjectTooLarge as err:
        raise RemoteCheckpointError(f"{key}: larger than {MAX_JSON_BYTES} bytes") from err
    return loads_untrusted(raw, key, error=RemoteCheckpointError)


def read_latest(bucket, version: str) -> Optional[dict[str, Any]]:
    """The `_LATEST.json` pointer of `version`, or None when nothing was published."""
    pointer = _get_json(bucket, _keys().checkpoint_latest_key(version))
    if pointer is None:
        return None
    if not isinstance(pointer, dict):
        raise RemoteCheckpointError(f"_LATEST.json of {version!r} is malformed: {pointer!r:.200}")
    json_int(pointer.get("window"), f"_LATEST.json of {version!r}: window",
             error=RemoteCheckpointError, minimum=0)
    return pointer


def safe_relative_path(path: Any) -> bool:
    """A manifest file path that lands strictly inside the download folder as a file: canonical
    POSIX form (no "", ".", "..", "//", trailing "/", backslash or NUL)."""
    if not isinstance(path, str) or not path or "\\" in path or "\0" in path:
        return False
    parts = path.split("/")
    return all(p not in ("", ".", "..") for p in parts)


def _check_manifest(manifest: Any, version: str, window: int) -> list[dict]:
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise RemoteCheckpointError(f"window {window}: manifest missing or of unknown format")
    if manifest.get("version") != version or manifest.get("window") != window:
        raise RemoteCheckpointError(
            f"manifest names version {manifest.get('version')!r} window {manifest.get('window')!r}, "
            f"expected {version!r} window {window}")
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise RemoteCheckpointError(f"window {window}: manifest lists no files")
    for entry in files:
        path = entry.get("path") if isinstance(entry, dict) else None
        ok = (safe_relative_path(path)
              and type(entry.get("size")) is int and 0 <= entry["size"] <= MAX_FILE_BYTES
              and isinstance(entry.get("sha256"), str) and _SHA_RE.fullmatch(entry["sha256"]))
        if not ok:
            raise RemoteCheckpointError(f"window {window}: bad manifest entry {entry!r:.200}")
    paths = {e["path"] for e in files}
    if len(paths) != len(files):
        raise RemoteCheckpointError(f"window {window}: manifest lists a file twice")
    for path in paths:  # "a" and "a/b" cannot both be files
        parents = PurePosixPath(path).parents
        clash = next((str(d) for d in parents if str(d) in paths), None)
        if clash is not None:
            raise RemoteCheckpointError(f"window {window}: manifest file {clash!r} is also a "
                                        f"folder of {path!r}")
    return files


async def _download_files(bucket, prefix: str, files: list[dict], dest: Path) -> None:
    from templar_jax.storage.errors import StorageError

    async def one(entry: dict) -> None:
        key = prefix + entry["path"]
        try:
            # A multi-GB checkpoint file needs longer than one small request's timeout.
            timeout = max(60.0, entry["size"] / _MIN_BYTES_PER_S)
            data = await bucket.aget(key, max_bytes=entry["size"], timeout=timeout)
        except StorageError as err:
            raise RemoteCheckpointError(f"{key}: {err}") from err
        if len(data) != entry["size"] or _sha256(data) != entry["sha256"]:
            raise RemoteCheckpointError(f"{key}: size/sha256 does not match the manifest")
        path = dest / entry["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(path.write_bytes, data)

    await asyncio.gather(*(one(e) for e in files))


def fetch_checkpoint(bucket, version: str, dest_root: str | Path, *,
                     window: Optional[int] = None) -> tuple[int, Path]:
    """Download window `window` (default: the `_LATEST.json` one) into `dest_root/{window}`.

    Returns (window, step_dir). An existing complete `dest_root/{window}` is reused.
    Raises RemoteCheckpointError when nothing is published or verification fails.
    """
    keys = _keys()
    if window is None:
        pointer = read_latest(bucket, version)
        if pointer is None:
            raise RemoteCheckpointError(f"no checkpoint published for version {version!r}")
        window = pointer["window"]
    dest_root = Path(dest_root)
    final = dest_root / str(window)
    if final.is_dir():
        return window, final
    prefix = keys.checkpoint_prefix(version, window)
    files = _check_manifest(_get_json(bucket, prefix + MANIFEST), version, window)
    partial = dest_root / f"{window}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    t0 = time.monotonic()
    try:
        asyncio.run(_download_files(bucket, prefix, files, partial))
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    os.replace(partial, final)
    log.info("fetched checkpoint window %d (%d files, %.1f MB) in %.1f s", window, len(files),
             sum(e["size"] for e in files) / 1e6, time.monotonic() - t0)
    return window, final
