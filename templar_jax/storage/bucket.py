"""`Bucket`: one object store (file, memory, GCS, S3/R2) behind tensorstore's kvstore.

Async-first (tensorstore futures are awaitable) with bounded concurrency, retries with
exponential backoff on transient failures, a timeout per request that grows with its size, and
a size cap checked against the object's metadata before any byte is downloaded. On gs:// and
s3://, objects at or above `BucketConfig.transfer.threshold_bytes` move as parts in parallel
(storage.transfer): ranged reads, S3 multipart uploads, GCS parts joined by compose. Sync
wrappers call the async methods through asyncio.run (use the async ones inside an event loop).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

import tensorstore as ts

from templar_jax.storage import gcs_compose, metadata, s3_multipart
from templar_jax.storage.s3_credentials import S3Credentials
from templar_jax.storage.keys import check_object_key
from templar_jax.storage.errors import ObjectNotFound, ObjectTooLarge, StorageError, StorageTimeout
from templar_jax.storage.location import Location, S3Profile, kvstore_spec, parse_url
from templar_jax.storage.metadata import ObjectInfo
from templar_jax.storage.sync import run_sync
from templar_jax.storage.transfer import BytesSource, FileSource, PartSource, TransferConfig, read_parts, write_parts

log = logging.getLogger(__name__)
T = TypeVar("T")

# tensorstore reports failures as ValueError("<ABSL_STATUS>: ..."); these codes may pass on retry.
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL", "ABORTED", "RESOURCE_EXHAUSTED", "UNKNOWN")

# Blocking metadata calls (stat, HTTP HEAD) run here, not in the loop's default executor:
# asyncio.run waits for that one at exit, so one hung HEAD would outlive a gather's deadline.
_BLOCKING = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="tjx-storage")


def _in_thread(fn: Callable[[], T]) -> Awaitable[T]:
    return asyncio.get_running_loop().run_in_executor(_BLOCKING, fn)


# memory:// stores are process-wide by name (tensorstore gives each open its own store).
_memory_lock = threading.Lock()
_memory_stores: dict[str, tuple[ts.KvStore, dict[str, tuple[int, float]]]] = {}


# GCS parts and intermediate compose objects live here (under the bucket URL's prefix) until joined.
PARTS_PREFIX = "_parts/"


@dataclass(frozen=True)
class BucketConfig:
    """How a neuron talks to every bucket it opens (its own and the peers').

    max_concurrency: requests in flight per bucket (parts included)
    request_timeout_s: seconds one request may take at least (larger ones get more, see transfer.min_rate_bytes_per_s)
    retries: extra attempts after the first on transient errors (per part for objects moved in parts)
    backoff_initial_s: first wait before a retry (doubles each time, with jitter)
    backoff_max_s: longest wait between retries
    """

    max_concurrency: int = 16
    request_timeout_s: float = 30.0  # the floor; a request of n bytes gets transfer.timeout_s(n, this)
    retries: int = 3  # extra attempts after the first, on transient errors only (per part for large objects)
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 2.0
    transfer: TransferConfig = TransferConfig()

    def __post_init__(self):
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_initial_s < 0 or self.backoff_max_s < 0:
            raise ValueError(f"backoff_initial_s and backoff_max_s must be >= 0, got "
                             f"{self.backoff_initial_s} and {self.backoff_max_s}")


def _classify(op: str, key: str, err: Exception) -> StorageError:
    if isinstance(err, StorageError):
        return err
    text = str(err)
    code = text.split(":", 1)[0].strip()
    return StorageError(f"{op} {key}: {text[:300]}", transient=code in _TRANSIENT)


def _prefix_range(prefix: str) -> ts.KvStore.KeyRange | None:
    if not prefix:
        return None
    raw = prefix.encode()
    end = raw.rstrip(b"\xff")
    end = end[:-1] + bytes([end[-1] + 1]) if end else b""
    return ts.KvStore.KeyRange(inclusive_min=raw, exclusive_max=end)


class Bucket:
    """Open with `Bucket.open(url, credentials)`; keys are relative to the URL's prefix."""

    def __init__(self, kv: ts.KvStore, loc: Location, credentials: S3Credentials | None,
                 config: BucketConfig, profile: S3Profile | None = None):
        self._kv = kv
        self.location = loc
        self._credentials = credentials
        self.config = config
        self._profile = profile
        self._semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._memory_stamps = _memory_stores[loc.bucket][1] if loc.scheme == "memory" else None
        if profile is not None:
            weakref.finalize(self, profile.remove)

    @classmethod
    def open(cls, url: str, credentials: S3Credentials | None = None, *, endpoint: str | None = None,
             region: str | None = None, config: BucketConfig | None = None) -> Bucket:
        config = config or BucketConfig()
        loc = parse_url(url, endpoint=endpoint, region=region)
        if loc.scheme == "memory":
            with _memory_lock:
                if loc.bucket not in _memory_stores:
                    _memory_stores[loc.bucket] = (ts.KvStore.open({"driver": "memory"}).result(), {})
            return cls(_memory_stores[loc.bucket][0], loc, None, config)
        profile = S3Profile(credentials, loc.region) if (loc.scheme == "s3" and credentials) else None
        try:
            kv = ts.KvStore.open(kvstore_spec(loc, profile=profile, retries=config.retries)).result()
        except Exception:
            if profile:
                profile.remove()
            raise
        return cls(kv, loc, credentials, config, profile)

    def __repr__(self) -> str:
        loc = self.location
        where = loc.prefix if loc.scheme == "file" else f"{loc.bucket}/{loc.prefix}"
        return f"Bucket({loc.scheme}://{where}, endpoint={loc.endpoint}, credentials={self._credentials!r})"

    def close(self) -> None:
        if self._profile is not None:
            self._profile.remove()

    # ------------------------------------------------------------------ plumbing

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = asyncio.Semaphore(self.config.max_concurrency)
        return sem

    async def _call(self, op: str, key: str, make: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run one request under the concurrency bound, with timeout and retries."""
        check_object_key(key, prefix=op == "list")  # every operation stays inside the bucket
        cfg = self.config
        timeout = cfg.request_timeout_s if timeout is None else timeout
        delay = cfg.backoff_initial_s
        async with self._semaphore():
            for attempt in range(cfg.retries + 1):
                try:
                    return await asyncio.wait_for(make(), timeout)
                except (TimeoutError, asyncio.TimeoutError):
                    err: StorageError = StorageTimeout(f"{op} {key}: no answer within {timeout:.1f} s")
                except Exception as e:  # tensorstore ValueError, StorageError from metadata
                    err = _classify(op, key, e)
                if not err.transient or attempt == cfg.retries:
                    raise err
                log.debug("retrying %s %s after %s (attempt %d)", op, key, err.reason, attempt + 1)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, cfg.backoff_max_s)
        raise AssertionError("unreachable")

    @staticmethod
    def _run(coro: Awaitable[T]) -> T:
        return run_sync(coro)

    def _timeout(self, nbytes: int, timeout: float | None = None) -> float:
        return self.config.transfer.timeout_s(nbytes, self.config.request_timeout_s) if timeout is None else timeout

    def _in_parts(self, nbytes: int) -> bool:
        return self.location.scheme in ("gs", "s3") and self.config.transfer.in_parts(nbytes)

    async def _read_range(self, key: str, start: int, end: int, timeout: float | None,
                          generations: set | None = None) -> bytes:
        """One ranged read request (with the Bucket's retries); adds the object generation it
        read to `generations` when given."""
        result = await self._call("get", key, lambda: self._kv.read(key, byte_range=slice(start, end)),
                                  self._timeout(end - start, timeout))
        if result.state != "value":
            raise ObjectNotFound(f"{key} not found")
        value = result.value  # each .value access copies the bytes out of tensorstore
        if len(value) != end - start:
            raise StorageError(f"get {key}: got {len(value)} bytes, asked for {end - start}")
        if generations is not None:
            generations.add(result.stamp.generation)
        return value

    async def _put_s3_parts(self, key: str, data: PartSource) -> None:
        loc = self.location
        obj = s3_multipart.S3Object(loc.endpoint, loc.bucket, loc.prefix + key, loc.region, self._credentials)
        t = self.config.request_timeout_s
        upload_id = await self._call("put", key, lambda: _in_thread(lambda: s3_multipart.create(obj, t)), t)

        async def part(i: int, chunk: memoryview) -> str:
            pt = self._timeout(len(chunk))
            return await self._call(f"put part {i + 1} of", key, lambda: _in_thread(
                lambda: s3_multipart.upload_part(obj, upload_id, i + 1, chunk, pt)), pt)

        try:
            etags = await write_parts(data, self.config.transfer, part)
            await self._call("put", key, lambda: _in_thread(lambda: s3_multipart.complete(obj, upload_id, etags, t)), t)
        except BaseException:
            try:  # leave no stored parts behind (best effort; the error that matters is the first)
                await asyncio.wait_for(_in_thread(lambda: s3_multipart.abort(obj, upload_id, t)), t)
            except Exception as e:
                log.warning("abort multipart upload of %s failed: %s", key, e)
            raise

    async def _put_gcs_parts(self, key: str, data: PartSource) -> None:
        loc = self.location
        scratch = f"{PARTS_PREFIX}{uuid.uuid4().hex}/"
        t = self.config.request_timeout_s

        async def part(i: int, chunk: memoryview) -> str:
            name = f"{scratch}{i:05d}"
            await self._call(f"put part {i + 1} of", key, lambda: self._kv.write(name, bytes(chunk)),
                             self._timeout(len(chunk)))
            return loc.prefix + name

        try:
            sources = await write_parts(data, self.config.transfer, part)
            await self._call("put", key, lambda: _in_thread(lambda: gcs_compose.compose(
                loc.bucket, loc.prefix + key, sources, loc.prefix + scratch, self._timeout(data.size))),
                self._timeout(data.size))
        finally:
            try:
                await asyncio.wait_for(self._kv.delete_range(_prefix_range(scratch)), t)
            except Exception as e:
                log.warning("deleting the parts of %s under %s failed: %s", key, scratch, e)

    # ------------------------------------------------------------------ async API

    async def aput(self, key: str, data: bytes) -> None:
        if self._in_parts(len(data)):
            await self._put_parts(key, BytesSource(data))
        else:
            await self._call("put", key, lambda: self._kv.write(key, data), self._timeout(len(data)))
        if self._memory_stamps is not None:
            self._memory_stamps[key] = (len(data), time.time())

    async def _put_parts(self, key: str, source: PartSource) -> None:
        await (self._put_s3_parts if self.location.scheme == "s3" else self._put_gcs_parts)(key, source)

    async def aput_file(self, key: str, path: str | os.PathLike) -> None:
        """The file's bytes as object `key`. An object that moves in parts is read
        from the file part by part as each is sent (at most part_concurrency parts in memory,
        whatever the file's size); a smaller one is read whole."""
        size = os.path.getsize(path)
        if not self._in_parts(size):
            data = await asyncio.to_thread(Path(path).read_bytes)
            await self.aput(key, data)
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            await self._put_parts(key, FileSource(fd, size))
        finally:
            os.close(fd)

    async def ahead(self, key: str, *, timeout: float | None = None) -> ObjectInfo | None:
        """Size and storage timestamp, or None when the object does not exist."""
        check_object_key(key)  # the memory branch below makes no request
        loc = self.location
        t = self.config.request_timeout_s if timeout is None else timeout
        if loc.scheme == "memory":
            entry = self._memory_stamps.get(key)
            return ObjectInfo(key, *entry) if entry else None
        if loc.scheme == "file":
            return await self._call("head", key, lambda: _in_thread(lambda: metadata.file_head(loc.prefix, key)), t)
        full_key = loc.prefix + key
        if loc.scheme == "s3":
            fn: Callable[[], Any] = lambda: metadata.s3_head(loc.endpoint, loc.bucket, full_key, region=loc.region,
                                                             credentials=self._credentials, timeout=t)
        else:
            fn = lambda: metadata.gcs_head(loc.bucket, full_key, timeout=t)
        info = await self._call("head", key, lambda: _in_thread(fn), t)
        return info._replace(key=key) if info else None

    async def aget(self, key: str, *, max_bytes: int | None = None, timeout: float | None = None) -> bytes:
        """The whole object. With max_bytes, metadata is checked first and at most that many
        bytes (the size the metadata reported) are requested. On gs:// and s3:// the size is
        always looked up first, so a large object is fetched in parts."""
        if max_bytes is None and self.location.scheme not in ("gs", "s3"):
            result = await self._call("get", key, lambda: self._kv.read(key), timeout)
            if result.state != "value":
                raise ObjectNotFound(f"{key} not found")
            return result.value
        info = await self.ahead(key, timeout=timeout)
        if info is None:
            raise ObjectNotFound(f"{key} not found")
        if max_bytes is not None and info.size > max_bytes:
            raise ObjectTooLarge(f"{key} is {info.size} bytes, cap {max_bytes}")
        return await self.aget_range(key, 0, info.size, timeout=timeout)

    async def aget_range(self, key: str, start: int, end: int, *, timeout: float | None = None) -> bytes:
        """Bytes [start, end) of the object (the range must lie within it); a large range as
        parallel ranged reads (`timeout` then applies to each part)."""
        if end == start:
            return b""
        if self._in_parts(end - start):
            generations: set = set()
            data = await read_parts(start, end, self.config.transfer,
                                    lambda a, b: self._read_range(key, a, b, timeout, generations))
            if len(generations) > 1:  # parts of two uploads must never be stitched together
                raise StorageError(f"get {key}: the object was replaced during a transfer in parts", transient=True)
            return data
        return await self._read_range(key, start, end, timeout)

    async def alist(self, prefix: str = "") -> list[str]:
        keys = await self._call("list", prefix, lambda: self._kv.list(_prefix_range(prefix)))
        return sorted(k.decode() for k in keys)

    async def adelete(self, key: str) -> None:
        await self._call("delete", key, lambda: self._kv.delete_range(ts.KvStore.KeyRange(
            inclusive_min=key.encode(), exclusive_max=key.encode() + b"\x00")))
        if self._memory_stamps is not None:
            self._memory_stamps.pop(key, None)

    # ------------------------------------------------------------------ sync API

    def put(self, key: str, data: bytes) -> None:
        self._run(self.aput(key, data))

    def put_file(self, key: str, path: str | os.PathLike) -> None:
        self._run(self.aput_file(key, path))

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self._run(self.aget(key, max_bytes=max_bytes))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._run(self.aget_range(key, start, end))

    def head(self, key: str) -> ObjectInfo | None:
        return self._run(self.ahead(key))

    def list(self, prefix: str = "") -> list[str]:
        return self._run(self.alist(prefix))

    def delete(self, key: str) -> None:
        self._run(self.adelete(key))
