"""Object size and *storage* timestamp per backend.

tensorstore's ReadResult.stamp.time is the time the read was satisfied (checked: it tracks
time.time() at the read, not the upload), so it cannot decide TOO_EARLY / TOO_LATE. Instead:
  file   os.stat: st_size, st_mtime (set by the filesystem when the object was written)
  memory a per-process table filled by Bucket.put (the store lives in this process)
  s3/R2  a SigV4-signed HEAD: Content-Length, Last-Modified (server clock, 1 s resolution)
  gcs    the JSON API object resource: size, updated (server clock, RFC 3339), same base URL
         as tensorstore (TENSORSTORE_GCS_HTTP_URL when set) and token (GOOGLE_AUTH_TOKEN_FOR_TESTING,
         else Application Default Credentials, else anonymous for public-read buckets).
The HTTP calls are blocking urllib requests run in a worker thread by the async Bucket.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import threading
import urllib.error
import urllib.request
from typing import NamedTuple
from urllib.parse import quote

from templar_jax.storage.s3_credentials import S3Credentials
from templar_jax.storage.errors import StorageError, http_error
from templar_jax.storage.sigv4 import s3_auth_headers, s3_object_url


class ObjectInfo(NamedTuple):
    key: str
    size: int
    stored_at: float  # unix seconds, from the storage backend's clock


def file_head(root: str, key: str) -> ObjectInfo | None:
    try:
        st = os.stat(os.path.join(root, key))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"stat {key}: {e.strerror}") from None
    return ObjectInfo(key, st.st_size, st.st_mtime)


def s3_head(
    endpoint: str, bucket: str, key: str, *, region: str, credentials: S3Credentials | None, timeout: float,
) -> ObjectInfo | None:
    url = s3_object_url(endpoint, bucket, key)
    headers = s3_auth_headers(credentials, "HEAD", url, region=region)
    request = urllib.request.Request(url, method="HEAD", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            size = int(resp.headers["Content-Length"])
            stored_at = email.utils.parsedate_to_datetime(resp.headers["Last-Modified"]).timestamp()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise http_error(f"HEAD {key}", e) from None
    except (OSError, TypeError, ValueError) as e:
        raise http_error(f"HEAD {key}", e) from None
    return ObjectInfo(key, size, stored_at)


_gcs_lock = threading.Lock()
_gcs_credentials: list = []  # [google.auth credentials or None], resolved once


def _gcs_token() -> str | None:
    token = os.environ.get("GOOGLE_AUTH_TOKEN_FOR_TESTING")
    if token:
        return token
    with _gcs_lock:
        if not _gcs_credentials:
            try:
                import google.auth

                creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
            except Exception:  # no ADC on this machine: anonymous (public-read buckets)
                creds = None
            _gcs_credentials.append(creds)
        creds = _gcs_credentials[0]
        if creds is None:
            return None
        if not creds.valid:
            import google.auth.transport.requests

            creds.refresh(google.auth.transport.requests.Request())
        return creds.token


def gcs_head(bucket: str, key: str, *, timeout: float) -> ObjectInfo | None:
    base = os.environ.get("TENSORSTORE_GCS_HTTP_URL", "https://storage.googleapis.com").rstrip("/")
    url = f"{base}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(key, safe='')}?fields=size,updated"
    token = _gcs_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            body = json.loads(resp.read(65536))
        size = int(body["size"])
        stored_at = dt.datetime.fromisoformat(body["updated"].replace("Z", "+00:00")).timestamp()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise http_error(f"GCS metadata {key}", e) from None
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise http_error(f"GCS metadata {key}", e) from None
    return ObjectInfo(key, size, stored_at)
