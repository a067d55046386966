"""Bucket credentials and the on-chain read-access commitment (<= 128 bytes).

Write credentials stay local (env / config file) and are never logged (see s3_credentials.py).
Read access is published on chain as a short string that `decode_commitment`
turns back into a `BucketAccess` (URL + endpoint + read credentials). Formats:

  R2 (reference)  128 chars: account_id (32) + read access key id (32) + read secret (64), all
                  hex; by the reference's convention the bucket is named after the account id and
                  lives at https://{account_id}.r2.cloudflarestorage.com, region "auto".
  GCS             "gs:" + bucket [+ "/" + prefix]; the bucket (or prefix) is public-read.
  local file      "file:" + absolute path (embedded demo, one machine); only when it fits.

Anything else raises CommitmentError, which chain readers catch to skip that neuron.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from templar_jax.storage.bucket import Bucket
from templar_jax.storage.s3_credentials import S3Credentials

MAX_COMMITMENT_BYTES = 128
R2_ACCOUNT_LEN, R2_KEY_ID_LEN, R2_SECRET_LEN = 32, 32, 64
_HEX = re.compile(r"[0-9a-fA-F]+")
_GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class CommitmentError(ValueError):
    """A chain commitment string that is not a valid read-access record."""


@dataclass(frozen=True)
class BucketAccess:
    """Everything needed to open a bucket: URL, S3 endpoint/region, credentials (may be None)."""

    url: str
    endpoint: str | None = None
    region: str | None = None
    credentials: S3Credentials | None = None

    def open(self, **kwargs) -> Bucket:
        return Bucket.open(self.url, self.credentials, endpoint=self.endpoint, region=self.region, **kwargs)


def r2_endpoint(account_id: str) -> str:
    return f"https://{account_id}.r2.cloudflarestorage.com"


def r2_commitment(account_id: str, access_key_id: str, secret_access_key: str) -> str:
    parts = ((account_id, R2_ACCOUNT_LEN, "account id"), (access_key_id, R2_KEY_ID_LEN, "access key id"),
             (secret_access_key, R2_SECRET_LEN, "secret"))
    for value, length, what in parts:
        if len(value) != length or not _HEX.fullmatch(value):
            raise CommitmentError(f"R2 {what} must be {length} hex chars")
    return account_id + access_key_id + secret_access_key


def gcs_commitment(bucket: str, prefix: str = "") -> str:
    text = "gs:" + bucket + (("/" + prefix.strip("/")) if prefix.strip("/") else "")
    _check_gcs(bucket, prefix.strip("/"))
    return _fits(text)


def file_commitment(path: str) -> str:
    path = os.path.abspath(path)
    _check_path(path)
    return _fits("file:" + path)


def _fits(text: str) -> str:
    if len(text.encode()) > MAX_COMMITMENT_BYTES:
        raise CommitmentError(f"commitment of {len(text.encode())} bytes exceeds {MAX_COMMITMENT_BYTES}")
    return text


def _check_gcs(bucket: str, prefix: str) -> None:
    if not _GCS_BUCKET.fullmatch(bucket):
        raise CommitmentError(f"invalid GCS bucket name {bucket[:70]!r}")
    if any(ord(c) < 0x21 or c == "\x7f" for c in prefix):
        raise CommitmentError("GCS prefix contains control or space characters")


def _check_path(path: str) -> None:
    if not path.startswith("/") or any(ord(c) < 0x20 for c in path):
        raise CommitmentError("file commitment needs an absolute path without control characters")


def decode_commitment(commitment: str | bytes) -> BucketAccess:
    """Parse a chain commitment into read access; CommitmentError if malformed."""
    if isinstance(commitment, bytes):
        try:
            commitment = commitment.decode("utf-8")
        except UnicodeDecodeError:
            raise CommitmentError("commitment is not UTF-8") from None
    if not isinstance(commitment, str):
        raise CommitmentError(f"commitment must be a string, got {type(commitment).__name__}")
    try:
        n_bytes = len(commitment.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: a str no chain can hold
        raise CommitmentError("commitment is not encodable as UTF-8") from None
    if n_bytes > MAX_COMMITMENT_BYTES:
        raise CommitmentError(f"commitment longer than {MAX_COMMITMENT_BYTES} bytes")
    if commitment.startswith("gs:"):
        bucket, _, prefix = commitment[3:].partition("/")
        _check_gcs(bucket, prefix)
        return BucketAccess(f"gs://{bucket}/{prefix + '/' if prefix else ''}")
    if commitment.startswith("file:"):
        path = commitment[5:]
        _check_path(path)
        return BucketAccess("file://" + path)
    if len(commitment) == R2_ACCOUNT_LEN + R2_KEY_ID_LEN + R2_SECRET_LEN and _HEX.fullmatch(commitment):
        account = commitment[:R2_ACCOUNT_LEN]
        key_id = commitment[R2_ACCOUNT_LEN : R2_ACCOUNT_LEN + R2_KEY_ID_LEN]
        secret = commitment[R2_ACCOUNT_LEN + R2_KEY_ID_LEN :]
        return BucketAccess(f"s3://{account}/", r2_endpoint(account), "auto", S3Credentials(key_id, secret))
    raise CommitmentError(f"unrecognized commitment format (length {len(commitment)})")


def encode_commitment(access: BucketAccess) -> str:
    """Inverse of decode_commitment for the three supported kinds."""
    url = access.url
    if url.startswith("gs://"):
        bucket, _, prefix = url[5:].partition("/")
        return gcs_commitment(bucket, prefix)
    if url.startswith("file://"):
        return file_commitment(url[7:])
    if url.startswith("s3://") and access.credentials is not None:
        account = url[5:].partition("/")[0]
        if access.endpoint == r2_endpoint(account):
            c = access.credentials
            return r2_commitment(account, c.access_key_id, c.secret_access_key)
    raise CommitmentError(f"no commitment format for {url[:60]!r} (R2, gs:// and file:// only)")
