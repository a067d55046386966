"""Bucket on file:// and memory://, keys, time windows, commitments, SigV4."""

import asyncio
import datetime as dt
import os
import time

import pytest

from templar_jax.storage import (
    BadBucketUrl,
    Bucket,
    BucketAccess,
    CommitmentError,
    GatherStatus,
    ObjectNotFound,
    ObjectTooLarge,
    PeerSource,
    S3Credentials,
    TimeStatus,
    UploadWindow,
    check_upload_time,
    decode_commitment,
    encode_commitment,
    file_commitment,
    gather,
    gcs_commitment,
    r2_commitment,
)
from templar_jax.storage import keys
from templar_jax.storage.sigv4 import sign_headers


@pytest.fixture(params=["file", "memory"])
def bucket(request, tmp_path):
    if request.param == "file":
        return Bucket.open(f"file://{tmp_path}/bucket")
    return Bucket.open(f"memory://local-{os.getpid()}-{time.monotonic_ns()}")


def test_put_get_head_list_delete(bucket):
    before = time.time()
    bucket.put("gradient-5-1-v1", b"x" * 100)
    bucket.put("gradient-5-2-v1", b"y")
    bucket.put("other/thing", b"z")
    assert bucket.get("gradient-5-1-v1") == b"x" * 100
    assert bucket.get_range("gradient-5-1-v1", 10, 20) == b"x" * 10
    info = bucket.head("gradient-5-1-v1")
    assert info.size == 100 and before - 2 <= info.stored_at <= time.time() + 2
    assert bucket.list("gradient-5-") == ["gradient-5-1-v1", "gradient-5-2-v1"]
    assert bucket.list() == ["gradient-5-1-v1", "gradient-5-2-v1", "other/thing"]
    bucket.delete("gradient-5-1-v1")
    assert bucket.head("gradient-5-1-v1") is None
    with pytest.raises(ObjectNotFound):
        bucket.get("gradient-5-1-v1")


def test_size_cap_checked_before_download(bucket):
    bucket.put("big", b"0" * 1000)
    with pytest.raises(ObjectTooLarge):
        bucket.get("big", max_bytes=999)
    assert bucket.get("big", max_bytes=1000) == b"0" * 1000


def test_memory_buckets_share_by_name():
    a = Bucket.open("memory://shared-name-test")
    a.put("k", b"v")
    assert Bucket.open("memory://shared-name-test").get("k") == b"v"


def test_file_timestamp_is_the_files_mtime(tmp_path):
    b = Bucket.open(f"file://{tmp_path}")
    b.put("k", b"v")
    os.utime(tmp_path / "k", (1000.0, 1000.0))
    assert b.head("k").stored_at == 1000.0


def test_async_api_concurrent_puts(bucket):
    async def run():
        await asyncio.gather(*(bucket.aput(f"k{i}", bytes([i])) for i in range(40)))
        return await asyncio.gather(*(bucket.aget(f"k{i}") for i in range(40)))

    assert asyncio.run(run()) == [bytes([i]) for i in range(40)]


def test_bad_urls():
    for url in ("ftp://x", "gs://", "file://"):
        with pytest.raises(BadBucketUrl):
            Bucket.open(url)


def test_gather_local_outcomes(tmp_path):
    b = Bucket.open(f"file://{tmp_path}")
    b.put(keys.gradient_key(3, 1, "v"), b"a" * 10)
    b.put(keys.gradient_key(3, 2, "v"), b"b" * 500)
    b.put(keys.gradient_key(3, 4, "v"), b"d")
    os.utime(tmp_path / keys.gradient_key(3, 4, "v"), (10.0, 10.0))  # long before the window
    now = time.time()
    window = UploadWindow.after_block(now - 5)
    peers = [PeerSource(uid, b) for uid in (1, 2, 3, 4)]
    out = gather(peers, 3, 10.0, version="v", max_bytes=100, upload_window=window)
    assert [o.uid for o in out] == [1, 2, 3, 4]
    assert [o.status for o in out] == [GatherStatus.OK, GatherStatus.TOO_BIG, GatherStatus.MISSING,
                                       GatherStatus.TOO_EARLY]
    assert out[0].data == b"a" * 10 and "not found" in out[2].reason


def test_gather_hands_each_download_to_consume_while_its_slot_is_held(tmp_path):
    b = Bucket.open(f"file://{tmp_path}")
    for uid in (1, 2, 3):
        b.put(keys.gradient_key(3, uid, "v"), bytes([uid]) * 10)
    held, peak, seen = [0], [0], []

    def consume(o):
        held[0] += 1
        peak[0] = max(peak[0], held[0])
        time.sleep(0.05)
        held[0] -= 1
        if o.uid == 3:
            raise RuntimeError("consumer bug")
        seen.append(o.data)
        return o._replace(data=None, reason="consumed")

    peers = [PeerSource(uid, b) for uid in (1, 2, 3, 4)]
    out = gather(peers, 3, 10.0, version="v", max_bytes=100, max_concurrency=1, consume=consume)
    assert [o.status for o in out] == [GatherStatus.OK, GatherStatus.OK, GatherStatus.ERROR, GatherStatus.MISSING]
    assert out[0].data is None and out[0].reason == "consumed" and sorted(seen) == [b"\x01" * 10, b"\x02" * 10]
    assert "RuntimeError: consumer bug" in out[2].reason and out[2].data is None
    assert peak[0] == 1  # one slot: one download's bytes at a time


# --- keys and time windows --------------------------------------------------------------------


def test_keys_follow_spec_section_3():
    assert keys.gradient_key(12, 7, "2.1") == "gradient-12-7-v2.1"
    assert keys.debug_key(12, 7, "2.1") == "debug-12-7-v2.1"
    assert keys.peers_key(14, "2.1") == "peers_14_v2.1.json"
    assert keys.start_window_key("2.1") == "start_window_v2.1.json"
    assert keys.aggregator_key(12, "2.1") == "aggregator-12-v2.1"
    assert keys.checkpoint_prefix("2.1", 12) == "checkpoints/2.1/12/"
    assert keys.checkpoint_latest_key("2.1") == "checkpoints/2.1/_LATEST.json"
    assert keys.parse_gradient_key("gradient-12-7-v2.1") == (12, 7, "2.1")
    assert keys.parse_peers_key("peers_14_v2.1.json") == (14, "2.1")
    for bad in (lambda: keys.gradient_key(-1, 0, "v"), lambda: keys.gradient_key(1, 0, "a/b"),
                lambda: keys.parse_gradient_key("gradient-x-1-v1")):
        with pytest.raises(keys.BadKey):
            bad()


def test_upload_window_bounds():
    w = UploadWindow.after_block(1000.0)
    assert w == (1000.0, 1070.0)
    assert check_upload_time(999.9, w) is TimeStatus.TOO_EARLY
    assert check_upload_time(1000.0, w) is TimeStatus.OK
    assert check_upload_time(1070.0, w) is TimeStatus.OK
    assert check_upload_time(1070.1, w) is TimeStatus.TOO_LATE
    assert check_upload_time(None, w) is TimeStatus.NOT_FOUND
    assert UploadWindow.after_block(1000.0, late_grace_s=10, early_slack_s=2) == (998.0, 1010.0)


# --- credentials and commitments --------------------------------------------------------------


def test_r2_commitment_roundtrip_reference_layout():
    account, key_id, secret = "a" * 32, "b1" * 16, "c2" * 32
    text = r2_commitment(account, key_id, secret)
    assert len(text) == 128 and text == account + key_id + secret
    access = decode_commitment(text)
    assert access.url == f"s3://{account}/" and access.region == "auto"
    assert access.endpoint == f"https://{account}.r2.cloudflarestorage.com"
    assert access.credentials == S3Credentials(key_id, secret)
    assert encode_commitment(access) == text


def test_gcs_and_file_commitments(tmp_path):
    assert decode_commitment(gcs_commitment("my-bucket", "run/7")).url == "gs://my-bucket/run/7/"
    assert encode_commitment(BucketAccess("gs://my-bucket/")) == "gs:my-bucket"
    text = file_commitment(str(tmp_path))
    assert decode_commitment(text.encode()).url == f"file://{tmp_path}"
    with pytest.raises(CommitmentError, match="exceeds 128"):
        file_commitment("/" + "x" * 200)


@pytest.mark.parametrize("bad", ["", "x" * 128, "gs:A", "gs:ok-bucket/a b", "file:relative", "f" * 127,
                                 b"\xff\xfe", "z" * 300, "file:/tmp/\x01", "file:/tmp/\ud800"])
def test_malformed_commitments_raise_typed_error(bad):
    with pytest.raises(CommitmentError):
        decode_commitment(bad)


def test_secrets_never_in_repr(tmp_path):
    creds = S3Credentials("AKIDEXAMPLE123456", "topsecretvalue-do-not-log", "session-token-secret")
    for text in (repr(creds), str(creds), repr(BucketAccess("s3://b/", "http://x", "auto", creds))):
        assert "topsecretvalue" not in text and "session-token-secret" not in text
        assert "AKIDEXAMPLE123456" not in text


def test_sigv4_matches_botocore():
    botocore = pytest.importorskip("botocore")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    url = "http://127.0.0.1:9000/bucket/gradient-1-2-v0%2Bx/a~b"
    mine = sign_headers("HEAD", url, region="auto", access_key_id="AK", secret_access_key="SK", now=now)
    request = AWSRequest(method="HEAD", url=url, headers={"x-amz-content-sha256": mine["x-amz-content-sha256"]})
    signer = S3SigV4Auth(Credentials("AK", "SK"), "s3", "auto")
    import unittest.mock as mock

    with mock.patch("botocore.auth.get_current_datetime", return_value=now.replace(tzinfo=None)):
        signer.add_auth(request)
    assert request.headers["Authorization"] == mine["Authorization"]


@pytest.mark.parametrize("key", ["../outside", "a/../../outside", "./x", "a//b", "/abs", "", "a\0b"])
def test_keys_cannot_leave_the_bucket(tmp_path, key):
    """Issue 22: `head` on a file bucket joined the key to the root itself and followed "../";
    every operation now rejects a key that is not confined to the bucket, before any I/O."""
    outside = tmp_path / "outside"
    outside.write_bytes(b"secret")
    for url in (f"file://{tmp_path}/root", "memory://confined"):
        bucket = Bucket.open(url)
        bucket.put("inside", b"ok")
        for op in (bucket.head, bucket.get, bucket.delete, lambda k: bucket.put(k, b"x"),
                   lambda k: bucket.get_range(k, 0, 1), lambda k: bucket.get(k, max_bytes=10)):
            with pytest.raises(keys.KeyOutsideBucket, match="not confined|not a string"):
                op(key)
        if key:  # "" is the whole bucket, a valid list prefix
            with pytest.raises(keys.KeyOutsideBucket):
                bucket.list(key + "/")
        assert bucket.list("") == ["inside"] and bucket.head("inside").size == 2
    assert outside.read_bytes() == b"secret"
    from templar_jax.storage.errors import StorageError

    assert isinstance(keys.KeyOutsideBucket("x"), StorageError)  # callers' storage handling applies
