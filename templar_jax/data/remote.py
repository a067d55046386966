"""Shards that live in a bucket: download to a local cache, check integrity, resume, prefetch.

A source is anything with the storage wing's method names (`templar_jax.storage.Bucket` fits):
    get(key) -> bytes
    head(key) -> size (an int, or an object with `.size`, or a dict with "size")
    get_range(key, start, end) -> bytes    optional; bytes [start, end), end exclusive
Files land in `cache_dir` under their manifest name. A download first goes to `NAME.partial`;
with `get_range` an interrupted download resumes from the partial file's length. A finished
file is accepted only if its size and sha256 match `manifest.json` (else `HashMismatch`); a
resumed download that fails the check is redone once from byte 0. A `NAME.lock` file (flock)
keeps two processes sharing one cache folder from writing the same partial file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any, Protocol

from templar_jax.data.errors import DataError, HashMismatch, ManifestError, ShardFetchError
from templar_jax.data.manifest import MANIFEST_NAME, Manifest, check_file, file_sha256, parse_manifest

log = logging.getLogger(__name__)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock (flock) held for the block: one downloader per file."""
    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _log_failed_prefetch(name: str):
    def done(fut: concurrent.futures.Future) -> None:
        if not fut.cancelled() and (err := fut.exception()) is not None:
            log.warning("%s: background download failed (%s); its first use downloads it again", name, err)
    return done


class ShardSource(Protocol):
    def get(self, key: str) -> bytes: ...
    def head(self, key: str) -> Any: ...


def _size_of(head_result: Any) -> int | None:
    if head_result is None:
        return None
    if isinstance(head_result, int):
        return head_result
    if isinstance(head_result, dict):
        return head_result.get("size")
    return getattr(head_result, "size", None)


class ShardCache:
    """Local, verified copies of a remote shard set's files, fetched on demand or in background."""

    def __init__(self, source: ShardSource, prefix: str, cache_dir: str | Path, *,
                 chunk_bytes: int = 8 << 20):
        self.source = source
        self.prefix = prefix.strip("/")
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.chunk_bytes = chunk_bytes
        self._manifest: Manifest | None = None
        self._verified: set[str] = set()
        self._lock = threading.Lock()
        self._futures: dict[str, concurrent.futures.Future] = {}
        # One background worker: prefetch is "the next shard", not a parallel download farm.
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shard-prefetch")

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def manifest(self) -> Manifest:
        """The remote manifest (fetched once, kept as a local copy)."""
        if self._manifest is None:
            try:
                data = self.source.get(self.key(MANIFEST_NAME))
            except Exception as e:  # storage errors vary by backend; name the object
                raise ShardFetchError(f"{self.key(MANIFEST_NAME)}: cannot fetch manifest ({e})") from e
            if data is None:
                raise ManifestError(f"{self.key(MANIFEST_NAME)}: manifest not found")
            self._manifest = parse_manifest(data)
            tmp = self.cache_dir / f"{MANIFEST_NAME}.{os.getpid()}.tmp"  # processes may share the cache
            tmp.write_bytes(data)
            os.replace(tmp, self.cache_dir / MANIFEST_NAME)
        return self._manifest

    def fetch(self, name: str) -> Path:
        """Local path of `name`, downloading it now unless present and verified."""
        with self._lock:
            fut = self._futures.get(name)
            if fut is None:
                fut = concurrent.futures.Future()
                self._futures[name] = fut
                owner = True
            else:
                owner = False
        if owner:
            self._run_into(fut, name)
        return fut.result()

    def prefetch(self, name: str) -> None:
        """Start downloading `name` in the background thread (no-op if already requested)."""
        with self._lock:
            if name in self._futures:
                return
            fut = concurrent.futures.Future()
            self._futures[name] = fut
        fut.add_done_callback(_log_failed_prefetch(name))  # else unseen unless someone waits on it
        self._pool.submit(self._run_into, fut, name)

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _run_into(self, fut: concurrent.futures.Future, name: str) -> None:
        try:
            fut.set_result(self._ensure(name))
        except BaseException as e:  # delivered to whoever waits on the file
            fut.set_exception(e)
            with self._lock:  # a failed fetch may be retried by a later call
                self._futures.pop(name, None)

    def _ensure(self, name: str) -> Path:
        entry = self.manifest().files.get(name)
        if entry is None:
            raise ManifestError(f"{name}: not listed in {MANIFEST_NAME}")
        with file_lock(self.cache_dir / (name + ".lock")):  # other processes sharing this cache
            return self._ensure_locked(name, entry)

    def _ensure_locked(self, name: str, entry) -> Path:
        final = self.cache_dir / name
        if final.exists() and final.stat().st_size == entry.size:
            if name in self._verified or file_sha256(final) == entry.sha256:
                self._verified.add(name)
                return final
            log.warning("%s: cached copy fails sha256, downloading again", name)
            final.unlink()
        partial = self.cache_dir / (name + ".partial")
        resumed = partial.exists() and partial.stat().st_size > 0
        digest = self._download(name, entry.size)
        try:
            check_file(partial, entry, verify_hash=True, sha256=digest)
        except DataError:
            partial.unlink(missing_ok=True)
            if not resumed:
                raise
            # the kept prefix itself may have been bad: one more try from byte 0
            log.warning("%s: resumed download fails its check, downloading it whole", name)
            digest = self._download(name, entry.size)
            try:
                check_file(partial, entry, verify_hash=True, sha256=digest)
            except DataError:
                partial.unlink(missing_ok=True)
                raise
        os.replace(partial, final)
        self._verified.add(name)
        return final

    def evict(self, name: str) -> None:
        """Delete the cached copy of `name` (a shard the schedule has left behind)."""
        with file_lock(self.cache_dir / (name + ".lock")):
            (self.cache_dir / name).unlink(missing_ok=True)
            self._verified.discard(name)
        with self._lock:
            self._futures.pop(name, None)

    def _download(self, name: str, size: int) -> str:
        """Fetch `name` into NAME.partial (resuming it when the source reads ranges); its sha256."""
        key = self.key(name)
        partial = self.cache_dir / (name + ".partial")
        have = partial.stat().st_size if partial.exists() else 0
        ranged = callable(getattr(self.source, "get_range", None))
        if have > size or not ranged:
            have = 0
        try:
            return self._transfer(key, partial, have, size, ranged)
        except DataError:
            raise
        except Exception as e:  # backend errors vary; the partial file stays for a resume
            raise ShardFetchError(f"{key}: download failed at byte "
                            f"{partial.stat().st_size if partial.exists() else 0} of {size} ({e!r})") from e

    def _transfer(self, key: str, partial: Path, have: int, size: int, ranged: bool) -> str:
        remote_size = _size_of(self.source.head(key))
        if remote_size is None:
            raise ShardFetchError(f"{key}: listed in {MANIFEST_NAME} but missing from the source")
        if remote_size != size:
            raise HashMismatch(f"{key}: source has {remote_size} bytes, {MANIFEST_NAME} says {size}")
        # hashed as it arrives (the kept prefix of a resume first): no second pass over the file
        digest = hashlib.sha256()
        if have:
            log.info("%s: resuming download at byte %d of %d", partial.name, have, size)
            with open(partial, "rb") as f:
                while block := f.read(self.chunk_bytes):
                    digest.update(block)
        with open(partial, "ab" if have else "wb") as f:
            if not ranged:
                block = self.source.get(key)
                digest.update(block)
                f.write(block)
                return digest.hexdigest()
            # one read ahead: the next range downloads while this one is hashed and written
            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shard-read") as reader:
                starts = range(have, size, self.chunk_bytes)
                ahead = reader.submit(self._read, key, have, size) if have < size else None
                for start in starts:
                    block = ahead.result()
                    nxt = start + self.chunk_bytes
                    ahead = reader.submit(self._read, key, nxt, size) if nxt < size else None
                    digest.update(block)
                    f.write(block)
        return digest.hexdigest()

    def _read(self, key: str, start: int, size: int) -> bytes:
        end = min(size, start + self.chunk_bytes)
        # Trim to the asked length: tolerates backends whose `end` is inclusive.
        block = self.source.get_range(key, start, end)[: end - start]
        if len(block) != end - start:
            raise ShardFetchError(f"{key}: read {len(block)} bytes at byte {start} of {size}, "
                                  f"asked for {end - start}")
        return block
