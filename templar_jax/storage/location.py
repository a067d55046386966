"""Bucket URLs -> tensorstore kvstore specs.

  file:///abs/dir   file://rel/dir   memory://name   gs://bucket/prefix   s3://bucket/prefix
s3 needs an endpoint for anything but AWS itself (R2: https://{account}.r2.cloudflarestorage.com,
region "auto"); tensorstore's s3 spec must carry it explicitly (an env-only endpoint hangs trying
real AWS). tensorstore takes S3 keys only from a profile file, so per-bucket keys are written to
a private temp dir (0700 / 0600) that lives as long as the Bucket and is deleted on close.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import NamedTuple
from urllib.parse import parse_qs, urlsplit

from templar_jax.storage.s3_credentials import S3Credentials
from templar_jax.storage.errors import BadBucketUrl

SCHEMES = ("file", "memory", "gs", "s3")


class Location(NamedTuple):
    scheme: str
    bucket: str  # bucket name, memory store name, or "" for file
    prefix: str  # key prefix ("" or ending in "/"); for file: the directory
    endpoint: str | None = None
    region: str | None = None


def parse_url(url: str, *, endpoint: str | None = None, region: str | None = None) -> Location:
    """Parse a bucket URL; s3 endpoint/region may also come as ?endpoint=...&region=... ."""
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme not in SCHEMES:
        raise BadBucketUrl(f"unsupported bucket URL {url!r}; use one of {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == "file":
        path = url[len("file://"):]
        if not path:
            raise BadBucketUrl("file:// URL needs a path")
        return Location("file", "", os.path.abspath(path).rstrip("/") + "/")
    if not parts.netloc:
        raise BadBucketUrl(f"{url!r} has no bucket name")
    prefix = parts.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    query = parse_qs(parts.query)
    endpoint = endpoint or (query.get("endpoint") or [None])[0]
    region = region or (query.get("region") or [None])[0]
    if scheme == "s3":
        region = region or "us-east-1"
        endpoint = (endpoint or f"https://s3.{region}.amazonaws.com").rstrip("/")
    return Location(scheme, parts.netloc, prefix, endpoint, region)


def retry_context(retries: int) -> dict:
    """Keep tensorstore's own HTTP retries short: the Bucket's retry loop and timeouts govern."""
    policy = {"max_retries": max(1, retries), "initial_delay": "0.05s", "max_delay": "0.5s"}
    return {"gcs_request_retries": policy, "s3_request_retries": policy}


class S3Profile:
    """A private AWS profile file holding one bucket's keys, for tensorstore's s3 driver."""

    def __init__(self, credentials: S3Credentials, region: str):
        self.dir = tempfile.mkdtemp(prefix="tjx-s3-")
        os.chmod(self.dir, 0o700)
        self.credentials_file = os.path.join(self.dir, "credentials")
        self.config_file = os.path.join(self.dir, "config")
        lines = ["[bucket]", f"aws_access_key_id = {credentials.access_key_id}",
                 f"aws_secret_access_key = {credentials.secret_access_key}"]
        if credentials.session_token:
            lines.append(f"aws_session_token = {credentials.session_token}")
        self._write(self.credentials_file, "\n".join(lines) + "\n")
        self._write(self.config_file, f"[profile bucket]\nregion = {region}\n")

    @staticmethod
    def _write(path: str, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def spec(self) -> dict:
        return {"type": "profile", "profile": "bucket", "credentials_file": self.credentials_file,
                "config_file": self.config_file}

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def kvstore_spec(loc: Location, *, profile: S3Profile | None, retries: int) -> dict:
    if loc.scheme == "file":
        return {"driver": "file", "path": loc.prefix}
    if loc.scheme == "gs":
        return {"driver": "gcs", "bucket": loc.bucket, "path": loc.prefix, "context": retry_context(retries)}
    if loc.scheme == "s3":
        creds = profile.spec() if profile is not None else {"type": "anonymous"}
        return {"driver": "s3", "bucket": loc.bucket, "path": loc.prefix, "endpoint": loc.endpoint,
                "aws_region": loc.region, "aws_credentials": creds, "context": retry_context(retries)}
    raise BadBucketUrl(f"no kvstore spec for scheme {loc.scheme}")
