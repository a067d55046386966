"""Bucket and gather against real local servers: fake-gcs-server (GCS) and moto (S3/R2),
plus an HTTP fault proxy for slow, failing, truncating and absent servers."""

import asyncio
import time

import pytest

from templar_jax.storage import (
    Bucket,
    BucketConfig,
    GatherStatus,
    ObjectTooLarge,
    PeerSource,
    StorageError,
    StorageTimeout,
    UploadWindow,
    agather,
    gather,
)
from templar_jax.storage.keys import gradient_key
from tests.servers import fault_proxy, free_port, gcs_server, s3_server  # noqa: F401  (fixtures)

FAST = BucketConfig(request_timeout_s=2.0, retries=2, backoff_initial_s=0.05)


@pytest.fixture(params=["gcs", "s3"])
def remote_bucket(request, gcs_server, s3_server):
    if request.param == "gcs":
        return Bucket.open(f"gs://{gcs_server.new_bucket()}/run/", config=FAST)
    return Bucket.open(f"s3://{s3_server.new_bucket()}/run/", s3_server.credentials, endpoint=s3_server.endpoint,
                       region=s3_server.region, config=FAST)


def test_roundtrip_and_server_timestamps(remote_bucket):
    before = time.time()
    remote_bucket.put("gradient-1-5-v0", b"abc" * 1000)
    remote_bucket.put("gradient-1-6-v0", b"z")
    remote_bucket.put("peers_2_v0.json", b"{}")
    after = time.time()
    assert remote_bucket.get("gradient-1-5-v0") == b"abc" * 1000
    assert remote_bucket.get_range("gradient-1-5-v0", 3, 9) == b"abcabc"
    info = remote_bucket.head("gradient-1-5-v0")
    assert info.size == 3000
    assert before - 1.5 <= info.stored_at <= after + 1.5  # server clock; S3 Last-Modified has 1 s steps
    assert remote_bucket.list("gradient-1-") == ["gradient-1-5-v0", "gradient-1-6-v0"]
    assert remote_bucket.head("nope") is None
    with pytest.raises(ObjectTooLarge):
        remote_bucket.get("gradient-1-5-v0", max_bytes=2999)
    remote_bucket.delete("gradient-1-6-v0")
    assert remote_bucket.list("gradient-1-") == ["gradient-1-5-v0"]


def test_timestamp_is_upload_time_not_read_time(remote_bucket):
    remote_bucket.put("k", b"v")
    first = remote_bucket.head("k").stored_at
    time.sleep(1.1)
    assert remote_bucket.head("k").stored_at == first


def test_gather_mixed_peers_across_backends(gcs_server, s3_server, tmp_path):
    gcs = Bucket.open(f"gs://{gcs_server.new_bucket()}/", config=FAST)
    s3 = Bucket.open(f"s3://{s3_server.new_bucket()}/", s3_server.credentials, endpoint=s3_server.endpoint,
                     config=FAST)
    local = Bucket.open(f"file://{tmp_path}")
    window_start = time.time() - 1
    gcs.put(gradient_key(9, 1, "t"), b"g" * 64)
    s3.put(gradient_key(9, 2, "t"), b"s" * 64)
    s3.put(gradient_key(9, 3, "t"), b"s" * 4096)  # too big
    local.put(gradient_key(9, 4, "t"), b"f" * 8)
    peers = [PeerSource(1, gcs), PeerSource(2, s3), PeerSource(3, s3), PeerSource(4, local), PeerSource(5, gcs)]
    out = gather(peers, 9, 10.0, version="t", max_bytes=1024, upload_window=UploadWindow(window_start - 1, window_start + 60))
    assert [o.status for o in out] == [GatherStatus.OK, GatherStatus.OK, GatherStatus.TOO_BIG, GatherStatus.OK,
                                       GatherStatus.MISSING]
    assert out[0].data == b"g" * 64 and out[1].data == b"s" * 64


def test_late_upload_is_too_late(s3_server):
    s3 = Bucket.open(f"s3://{s3_server.new_bucket()}/", s3_server.credentials, endpoint=s3_server.endpoint,
                     config=FAST)
    window = UploadWindow.after_block(time.time() - 80, late_grace_s=70)  # closed ~10 s ago
    s3.put(gradient_key(4, 1, "t"), b"late")
    (out,) = gather([PeerSource(1, s3)], 4, 10.0, version="t", max_bytes=100, upload_window=window)
    assert out.status is GatherStatus.TOO_LATE and out.data is None


def _proxied(s3_server, proxy, config=FAST):
    name = s3_server.new_bucket()
    return name, Bucket.open(f"s3://{name}/", s3_server.credentials, endpoint=proxy.endpoint, config=config)


def test_5xx_then_success_is_retried(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    _, bucket = _proxied(s3_server, proxy)
    bucket.put("k", b"payload")
    proxy.fail_next = 2
    assert bucket.get("k", max_bytes=100) == b"payload"
    assert proxy.fail_next == 0  # both failures were served, then it succeeded


def test_persistent_5xx_becomes_error_outcome(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    _, bucket = _proxied(s3_server, proxy)
    bucket.put(gradient_key(1, 1, "t"), b"x")
    proxy.fail_next = 10**6
    (out,) = gather([PeerSource(1, bucket)], 1, 10.0, version="t", max_bytes=10)
    assert out.status is GatherStatus.ERROR and "503" in out.reason


def test_slow_peer_times_out_others_unaffected(s3_server, fault_proxy):
    slow_proxy = fault_proxy(s3_server.endpoint)
    _, slow = _proxied(s3_server, slow_proxy, BucketConfig(request_timeout_s=10.0, retries=0))
    fast = Bucket.open(f"s3://{s3_server.new_bucket()}/", s3_server.credentials, endpoint=s3_server.endpoint,
                       config=FAST)
    slow.put(gradient_key(2, 1, "t"), b"slow")
    fast.put(gradient_key(2, 2, "t"), b"fast")
    slow_proxy.delay_s = 3.0
    start = time.monotonic()
    out = gather([PeerSource(1, slow), PeerSource(2, fast)], 2, 1.0, version="t", max_bytes=10)
    assert time.monotonic() - start < 2.5  # the deadline, not the slow server, decides
    assert [o.status for o in out] == [GatherStatus.TIMEOUT, GatherStatus.OK]
    slow_proxy.delay_s = 0


def test_request_timeout_raises_typed_error(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    _, bucket = _proxied(s3_server, proxy, BucketConfig(request_timeout_s=0.5, retries=1, backoff_initial_s=0.01))
    bucket.put("k", b"v")
    proxy.delay_s = 2.0
    with pytest.raises(StorageTimeout):
        bucket.head("k")
    proxy.delay_s = 0


def test_truncated_object_is_an_error_not_data(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    _, bucket = _proxied(s3_server, proxy, BucketConfig(request_timeout_s=3.0, retries=1, backoff_initial_s=0.01))
    bucket.put(gradient_key(3, 1, "t"), b"0123456789" * 100)
    proxy.truncate_next = 10**6
    (out,) = gather([PeerSource(1, bucket)], 3, 15.0, version="t", max_bytes=10**4)
    assert out.status in (GatherStatus.ERROR, GatherStatus.TIMEOUT) and out.data is None
    proxy.truncate_next = 0
    (out,) = gather([PeerSource(1, bucket)], 3, 15.0, version="t", max_bytes=10**4)
    assert out.ok and out.data == b"0123456789" * 100


def test_server_down_is_an_error_outcome(s3_server):
    dead = Bucket.open("s3://nobody/", s3_server.credentials, endpoint=f"http://127.0.0.1:{free_port()}",
                       config=BucketConfig(request_timeout_s=1.0, retries=1, backoff_initial_s=0.01))
    start = time.monotonic()
    (out,) = gather([PeerSource(7, dead)], 1, 10.0, version="t", max_bytes=10)
    assert out.status in (GatherStatus.ERROR, GatherStatus.TIMEOUT) and time.monotonic() - start < 10
    with pytest.raises(StorageError):
        dead.put("k", b"v")


def test_bounded_concurrency(s3_server, fault_proxy):
    proxy = fault_proxy(s3_server.endpoint)
    _, bucket = _proxied(s3_server, proxy, BucketConfig(max_concurrency=2, request_timeout_s=5.0))
    bucket.put("k", b"v")
    proxy.delay_s = 0.3
    proxy.methods = {"GET"}

    async def run():
        start = time.monotonic()
        await asyncio.gather(*(bucket.aget("k") for _ in range(6)))
        return time.monotonic() - start

    assert asyncio.run(run()) >= 0.85  # 6 requests, 2 at a time, 0.3 s each
