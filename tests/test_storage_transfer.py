"""Large objects in parts (storage.transfer): parallel ranged reads, S3 multipart uploads, GCS
parts + compose, per-part retries after a connection cut mid-transfer, the size cap before any
byte, and timeouts that grow with size. Real local servers (moto, fake-gcs-server); S3 goes
through the fault proxy, which counts requests and cuts connections after N bytes; GCS failures
are injected at the part level (tensorstore reads the GCS URL once per process)."""

import asyncio
import os
import time
import urllib.request

import pytest

from templar_jax.storage import Bucket, BucketConfig, ObjectTooLarge, StorageError, StorageTimeout
from templar_jax.storage.sigv4 import sign_headers
from templar_jax.storage.transfer import BytesSource, MiB, TransferConfig, part_ranges, read_parts, write_parts
from tests.servers import fault_proxy, gcs_server, s3_server  # noqa: F401  (fixtures)

PARTS = TransferConfig(part_bytes=5 * MiB, threshold_bytes=5 * MiB, part_concurrency=4)
CONFIG = BucketConfig(request_timeout_s=10.0, retries=2, backoff_initial_s=0.02, transfer=PARTS)
BLOB = os.urandom(12 * MiB + 123)  # three parts: 5 MiB, 5 MiB, 2 MiB + 123 B


def _s3(s3_server, endpoint, config=CONFIG):
    return Bucket.open(f"s3://{s3_server.new_bucket()}/run/", s3_server.credentials, endpoint=endpoint,
                       region=s3_server.region, config=config)


def _count(proxy, method, marker=""):
    return sum(r.startswith(method + " ") and marker in r for r in proxy.requests)


# ------------------------------------------------------------------ the plan


def test_part_ranges_cover_the_range_once():
    assert part_ranges(0, 12, 5) == [(0, 5), (5, 10), (10, 12)]
    assert part_ranges(3, 13, 5) == [(3, 8), (8, 13)]
    assert part_ranges(0, 0, 5) == []


def test_timeout_grows_with_size_above_the_floor():
    cfg = TransferConfig()
    assert cfg.timeout_s(1000, 30.0) == 30.0
    assert cfg.timeout_s(1_380_000_000, 30.0) == pytest.approx(55.2)  # a covenant-72b payload at 25 MB/s
    assert cfg.timeout_s(64 * MiB, 300.0) == 300.0  # the reference's floor, when configured


def test_transfer_config_rejects_bad_values():
    with pytest.raises(ValueError, match="part_bytes"):
        TransferConfig(part_bytes=MiB)  # below S3's minimum part size
    with pytest.raises(ValueError, match="part_concurrency"):
        TransferConfig(part_concurrency=0)
    with pytest.raises(ValueError, match="min_rate_bytes_per_s"):
        TransferConfig(min_rate_bytes_per_s=0)


def test_parts_run_in_parallel_up_to_the_bound_and_keep_order():
    cfg = TransferConfig(part_bytes=5 * MiB, part_concurrency=3)
    data = os.urandom(23 * MiB)
    live, peak = [0], [0]

    async def read_range(a, b):
        live[0] += 1
        peak[0] = max(peak[0], live[0])
        await asyncio.sleep(0.01)
        live[0] -= 1
        return data[a:b]

    async def upload(i, chunk):
        await asyncio.sleep(0.01 * (5 - i))  # later parts finish first
        return (i, bytes(chunk))

    assert asyncio.run(read_parts(0, len(data), cfg, read_range)) == data
    assert peak[0] == 3
    out = asyncio.run(write_parts(BytesSource(data), cfg, upload))
    assert [i for i, _ in out] == [0, 1, 2, 3, 4] and b"".join(c for _, c in out) == data


def test_a_failed_part_cancels_the_rest():
    cfg = TransferConfig(part_bytes=5 * MiB, part_concurrency=8)
    finished = []

    async def read_range(a, b):
        if a == 0:
            raise StorageError("part 0 failed")
        await asyncio.sleep(0.5)
        finished.append(a)
        return b"x" * (b - a)

    with pytest.raises(StorageError, match="part 0"):
        asyncio.run(read_parts(0, 20 * MiB, cfg, read_range))
    assert finished == []


# ------------------------------------------------------------------ S3 (moto behind the fault proxy)


def test_s3_round_trip_in_parts(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    bucket = _s3(s3_server, proxy.endpoint)
    bucket.put("big", BLOB)
    assert _count(proxy, "PUT", "partNumber=") == 3 and _count(proxy, "POST", "uploadId=") == 1
    proxy.requests.clear()
    assert bucket.get("big") == BLOB
    assert _count(proxy, "GET") == 3  # three ranged reads
    assert bucket.get("big", max_bytes=len(BLOB)) == BLOB
    assert bucket.get_range("big", 5 * MiB - 7, 10 * MiB + 9) == BLOB[5 * MiB - 7:10 * MiB + 9]
    assert bucket.head("big").size == len(BLOB)
    bucket.put("small", b"abc")  # under the threshold: one PUT, as before
    assert bucket.get("small") == b"abc"


def test_s3_upload_cut_mid_part_completes_on_retry(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    bucket = _s3(s3_server, proxy.endpoint)
    proxy.methods, proxy.cut_next, proxy.cut_after_bytes = {"PUT"}, 1, MiB  # reset 1 MiB into a part
    bucket.put("big", BLOB)
    assert proxy.cut_next == 0
    assert _count(proxy, "PUT", "partNumber=") == 4  # three parts, one of them sent twice
    proxy.reset()
    assert bucket.get("big") == BLOB


def test_s3_download_cut_mid_part_completes_on_retry(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    bucket = _s3(s3_server, proxy.endpoint)
    bucket.put("big", BLOB)
    proxy.requests.clear()
    proxy.methods, proxy.cut_next, proxy.cut_after_bytes = {"GET"}, 2, MiB  # two parts cut after 1 MiB
    assert bucket.get("big") == BLOB
    assert proxy.cut_next == 0 and _count(proxy, "GET") == 5  # three parts + two retries


def test_s3_persistent_cuts_fail_typed_and_leave_no_object(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    bucket = _s3(s3_server, proxy.endpoint, BucketConfig(request_timeout_s=5.0, retries=1,
                                                         backoff_initial_s=0.01, transfer=PARTS))
    proxy.methods, proxy.cut_next, proxy.cut_after_bytes = {"PUT"}, 10**6, MiB
    with pytest.raises(StorageError, match="part"):
        bucket.put("big", BLOB)
    assert _count(proxy, "DELETE", "uploadId=") == 1  # the multipart upload was aborted
    proxy.reset()
    assert bucket.head("big") is None
    bucket.put("big", BLOB)
    proxy.methods, proxy.cut_next, proxy.cut_after_bytes = {"GET"}, 10**6, MiB
    with pytest.raises(StorageError):
        bucket.get("big")


def test_request_timeout_grows_with_the_bytes_it_moves(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    slow_rate = TransferConfig(part_bytes=5 * MiB, threshold_bytes=5 * MiB, min_rate_bytes_per_s=2e6)  # 5 MiB: 2.6 s
    bucket = _s3(s3_server, proxy.endpoint, BucketConfig(request_timeout_s=1.0, retries=0, transfer=slow_rate))
    blob = BLOB[:10 * MiB]  # two parts of 5 MiB
    bucket.put("big", blob)
    bucket.put("small", b"abc")
    proxy.methods, proxy.delay_s = {"GET"}, 1.5  # every GET answers after 1.5 s
    assert bucket.get("big") == blob  # each 5 MiB part may take 2.6 s
    with pytest.raises(StorageTimeout):
        bucket.get("small")  # 3 bytes may take the 1 s floor
    proxy.reset()


def test_s3_size_cap_is_checked_before_any_byte(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    bucket = _s3(s3_server, proxy.endpoint)
    bucket.put("big", BLOB)
    proxy.requests.clear()
    with pytest.raises(ObjectTooLarge):
        bucket.get("big", max_bytes=len(BLOB) - 1)
    assert _count(proxy, "GET") == 0 and _count(proxy, "HEAD") == 1


# ------------------------------------------------------------------ GCS (fake-gcs-server)


class _CutKv:
    """The Bucket's tensorstore kvstore, with the first `cuts` reads or part writes failing the
    way tensorstore reports a dropped connection."""

    def __init__(self, kv, *, read_cuts=0, write_cuts=0):
        self._kv, self.read_cuts, self.write_cuts = kv, read_cuts, write_cuts
        self.reads, self.writes = [], []

    async def _cut(self):
        await asyncio.sleep(0.01)
        raise ValueError("UNAVAILABLE: connection reset by peer (injected mid-transfer)")

    def read(self, key, **kw):
        self.reads.append(kw.get("byte_range"))
        if self.read_cuts:
            self.read_cuts -= 1
            return self._cut()
        return self._kv.read(key, **kw)

    def write(self, key, value):
        self.writes.append(key)
        if self.write_cuts and key.startswith("_parts/"):
            self.write_cuts -= 1
            return self._cut()
        return self._kv.write(key, value)

    def __getattr__(self, name):
        return getattr(self._kv, name)


class _ReplacingKv(_CutKv):
    """Overwrites the object (same size, other bytes) just before the second part is read, once
    the first part's read is done (else that read may see the new object too)."""

    def read(self, key, **kw):
        if len(self.reads) == 1:
            self._first.result()
            self._kv.write(key, bytes(len(BLOB))).result()
        future = super().read(key, **kw)
        if len(self.reads) == 1:
            self._first = future
        return future


def _gcs(gcs_server, config=CONFIG):
    return Bucket.open(f"gs://{gcs_server.new_bucket()}/run/", config=config)


def test_gcs_round_trip_in_parts_via_compose(gcs_server):
    bucket = _gcs(gcs_server)
    bucket._kv = kv = _CutKv(bucket._kv)
    bucket.put("big", BLOB)
    assert sum(k.startswith("_parts/") for k in kv.writes) == 3
    assert bucket.list() == ["big"]  # the parts are gone once composed
    assert bucket.get("big") == BLOB
    assert len(kv.reads) == 3
    assert bucket.get_range("big", 5 * MiB - 7, 10 * MiB + 9) == BLOB[5 * MiB - 7:10 * MiB + 9]
    info = bucket.head("big")
    assert info.size == len(BLOB) and abs(info.stored_at - time.time()) < 30


def test_gcs_cut_parts_complete_on_retry(gcs_server):
    bucket = _gcs(gcs_server)
    bucket._kv = kv = _CutKv(bucket._kv, write_cuts=1, read_cuts=2)
    bucket.put("big", BLOB)
    assert kv.write_cuts == 0 and sum(k.startswith("_parts/") for k in kv.writes) == 4
    assert bucket.get("big") == BLOB
    assert kv.read_cuts == 0 and len(kv.reads) == 5


@pytest.mark.parametrize("backend", ["gcs", "s3"])
def test_an_object_replaced_mid_transfer_is_an_error_not_a_mix(backend, gcs_server, s3_server):
    bucket = _gcs(gcs_server) if backend == "gcs" else _s3(s3_server, s3_server.endpoint)
    bucket.put("big", BLOB)
    bucket._kv = _ReplacingKv(bucket._kv)
    with pytest.raises(StorageError, match="replaced"):
        bucket.get("big")
    assert bucket.get("big") == bytes(len(BLOB))  # once it is stable, it reads whole


def test_gcs_persistent_failure_is_typed_and_cleans_parts(gcs_server):
    bucket = _gcs(gcs_server, BucketConfig(request_timeout_s=5.0, retries=1, backoff_initial_s=0.01, transfer=PARTS))
    bucket._kv = _CutKv(bucket._kv, write_cuts=10**6)  # every part write and its retries fail
    with pytest.raises(StorageError, match="part"):
        bucket.put("big", BLOB)
    assert bucket.list() == []  # no object, no parts left behind


# ------------------------------------------------------------------ 300 MB through both servers


def _s3_etag(s3_server, bucket, key):
    loc, c = bucket.location, s3_server.credentials
    url = f"{loc.endpoint}/{loc.bucket}/{loc.prefix}{key}"
    headers = sign_headers("HEAD", url, region=loc.region, access_key_id=c.access_key_id,
                           secret_access_key=c.secret_access_key)
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD", headers=headers), timeout=10) as r:
        return r.headers["ETag"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_300mb_round_trip_in_64mib_parts(backend, s3_server, gcs_server):
    config = BucketConfig(request_timeout_s=30.0, transfer=TransferConfig())  # the defaults: 64 MiB parts
    bucket = _s3(s3_server, s3_server.endpoint, config) if backend == "s3" else _gcs(gcs_server, config)
    bucket._kv = kv = _CutKv(bucket._kv)  # counts tensorstore requests, cuts nothing
    blob = os.urandom(300_000_000)  # five parts: 4 x 64 MiB + 31.6 MB
    start = time.monotonic()
    bucket.put("payload", blob)
    put_s = time.monotonic() - start
    if backend == "s3":
        assert _s3_etag(s3_server, bucket, "payload").strip('"').endswith("-5")  # a 5-part multipart object
    else:
        assert sum(k.startswith("_parts/") for k in kv.writes) == 5
    start = time.monotonic()
    assert bucket.get("payload", max_bytes=len(blob)) == blob
    get_s = time.monotonic() - start
    assert len(kv.reads) == 5
    print(f"{backend}: 300 MB put {put_s:.1f} s, get {get_s:.1f} s")
    assert bucket.list() == ["payload"]


def test_run_sync_never_formats_the_result():
    """asyncio.run (3.11) repr()s its main task on exit; a 100 MB result took seconds to format."""
    from templar_jax.storage.sync import run_sync

    formatted = []

    class Big:
        def __repr__(self):
            formatted.append(1)
            return "Big"

    async def make():
        return Big()

    assert isinstance(run_sync(make()), Big) and formatted == []


@pytest.mark.parametrize("backend", ["gcs", "s3"])
def test_put_file_sends_parts_read_from_the_file(backend, gcs_server, s3_server, tmp_path, monkeypatch):
    bucket = _gcs(gcs_server) if backend == "gcs" else _s3(s3_server, s3_server.endpoint)
    path = tmp_path / "object"
    path.write_bytes(BLOB)
    reads, real_pread = [], os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, at: reads.append(n) or real_pread(fd, n, at))
    bucket.put_file("big", path)
    monkeypatch.undo()
    assert sorted(reads) == sorted(b - a for a, b in part_ranges(0, len(BLOB), PARTS.part_bytes))  # one read per part
    assert bucket.get("big") == BLOB
    (tmp_path / "small").write_bytes(b"abc")  # under the threshold: read whole, one request
    bucket.put_file("small", tmp_path / "small")
    assert bucket.get("small") == b"abc"
