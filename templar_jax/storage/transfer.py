"""Large objects as parts in parallel: the plan (part ranges, timeouts) and the orchestration.

The store-specific requests come in as coroutine functions (a ranged read, a part upload), so
this module knows no backend: `Bucket` wires in tensorstore ranged reads, S3 multipart uploads
(storage.s3_multipart) and GCS parts + compose (storage.gcs_compose). Each part is one request
with its own size-grown timeout and bounded retries (the Bucket's retry loop); a failed part is
sent or fetched again on its own while the parts already done are kept, so a connection cut
mid-transfer costs one part, not the object. The reference moves a 1.38 GB payload as 64 MiB
multipart parts and parallel ranged GETs, with a timeout of max(300 s, size / 25 MB/s).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

MiB = 2**20
S3_MIN_PART_BYTES = 5 * MiB  # S3 and R2 refuse smaller parts (all but the last)


@dataclass(frozen=True)
class TransferConfig:
    """How objects at or above `threshold_bytes` move on gs:// and s3:// (file and memory
    buckets read and write whole objects).

    part_bytes: bytes per part of a large upload or ranged download (S3's minimum: 5 MiB)
    threshold_bytes: objects of at least this many bytes move in parts
    part_concurrency: parts of one object in flight (also bounded by the bucket's max_concurrency)
    min_rate_bytes_per_s: slowest accepted rate: a request of n bytes may take max(request_timeout_s, n / this) seconds
    """

    part_bytes: int = 64 * MiB
    threshold_bytes: int = 64 * MiB
    part_concurrency: int = 8  # parts of one object in flight (also bounded by the Bucket's max_concurrency)
    min_rate_bytes_per_s: float = 25e6  # a request of n bytes may take max(request_timeout_s, n / min_rate_bytes_per_s)

    def __post_init__(self):
        if self.part_bytes < S3_MIN_PART_BYTES:
            raise ValueError(f"part_bytes {self.part_bytes} < {S3_MIN_PART_BYTES} (the S3 minimum part size)")
        if self.threshold_bytes < 1:
            raise ValueError(f"threshold_bytes must be >= 1, got {self.threshold_bytes}")
        if self.part_concurrency < 1:
            raise ValueError(f"part_concurrency must be >= 1, got {self.part_concurrency}")
        if self.min_rate_bytes_per_s <= 0:
            raise ValueError(f"min_rate_bytes_per_s must be > 0, got {self.min_rate_bytes_per_s}")

    def timeout_s(self, nbytes: int, floor_s: float) -> float:
        """Seconds one request moving `nbytes` may take: grows with size above the floor."""
        return max(floor_s, nbytes / self.min_rate_bytes_per_s)

    def in_parts(self, nbytes: int) -> bool:
        return nbytes >= self.threshold_bytes


def part_ranges(start: int, end: int, part_bytes: int) -> list[tuple[int, int]]:
    """[start, end) cut into consecutive [a, b) ranges of part_bytes (the last may be shorter)."""
    return [(a, min(a + part_bytes, end)) for a in range(start, end, part_bytes)]


async def _all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Results in order; the first failure cancels the parts still running, then propagates."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def read_parts(start: int, end: int, config: TransferConfig,
                     read_range: Callable[[int, int], Awaitable[bytes]]) -> bytes:
    """Bytes [start, end) fetched as parallel ranged reads of config.part_bytes each."""
    out = bytearray(end - start)
    sem = asyncio.Semaphore(config.part_concurrency)

    async def one(a: int, b: int) -> None:
        async with sem:
            chunk = await read_range(a, b)
        out[a - start:b - start] = chunk

    await _all(one(a, b) for a, b in part_ranges(start, end, config.part_bytes))
    return bytes(out)


async def write_parts(source: PartSource, config: TransferConfig,
                      upload_part: Callable[[int, memoryview], Awaitable[T]]) -> list[T]:
    """upload_part(index, chunk) for each config.part_bytes slice of `source` (each read as its
    upload starts: at most part_concurrency parts in memory), in parallel; the results in part
    order (S3 ETags, GCS part names)."""
    sem = asyncio.Semaphore(config.part_concurrency)

    async def one(i: int, a: int, b: int) -> T:
        async with sem:
            return await upload_part(i, await source.read(a, b))

    return await _all(one(i, a, b) for i, (a, b) in enumerate(part_ranges(0, source.size, config.part_bytes)))


class PartSource:
    """Bytes [a, b) of an object to upload, read when its part is sent."""

    size: int

    async def read(self, a: int, b: int) -> memoryview:
        raise NotImplementedError


class BytesSource(PartSource):
    def __init__(self, data: bytes):
        self._view = memoryview(data)
        self.size = len(data)

    async def read(self, a: int, b: int) -> memoryview:
        return self._view[a:b]


class FileSource(PartSource):
    """An open file's bytes (positional reads in a worker thread; the file is not read whole)."""

    def __init__(self, fd: int, size: int):
        self._fd, self.size = fd, size

    async def read(self, a: int, b: int) -> memoryview:
        chunk = await asyncio.to_thread(os.pread, self._fd, b - a, a)
        if len(chunk) != b - a:  # the file shrank under the upload
            raise OSError(f"read {len(chunk)} bytes at {a}, expected {b - a}")
        return memoryview(chunk)
