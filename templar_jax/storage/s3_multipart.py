"""S3 / R2 multipart upload (tensorstore's s3 driver writes one PUT per object).

Blocking SigV4-signed urllib requests, one per call; the async Bucket runs them in worker
threads, in parallel per part, with its own timeouts and retries. Create -> upload parts
(1-based numbers, >= 5 MiB but the last) -> complete with the parts' ETags; abort on failure.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import NamedTuple
from urllib.parse import quote
from xml.sax.saxutils import escape

from templar_jax.storage.errors import StorageError, http_error
from templar_jax.storage.s3_credentials import S3Credentials
from templar_jax.storage.sigv4 import s3_auth_headers, s3_object_url


class S3Object(NamedTuple):
    endpoint: str
    bucket: str
    key: str  # full key (the bucket URL's prefix included)
    region: str
    credentials: S3Credentials | None


def _request(obj: S3Object, method: str, query: str, body: bytes | memoryview, timeout: float,
             what: str) -> tuple[dict[str, str], bytes]:
    url = f"{s3_object_url(obj.endpoint, obj.bucket, obj.key)}?{query}"
    # an explicit type: urllib would send form-encoded, and servers may parse the body as a form
    headers = {"Content-Length": str(len(body)), "Content-Type": "application/octet-stream",
               **s3_auth_headers(obj.credentials, method, url, region=obj.region, body=body)}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return dict(resp.headers.items()), resp.read()
    except (urllib.error.HTTPError, OSError, ValueError) as e:
        raise http_error(f"{what} {obj.key}", e) from None


def _xml_field(body: bytes, name: str, what: str) -> str:
    match = re.search(rf"<{name}>([^<]+)</{name}>".encode(), body)
    if match is None:
        raise StorageError(f"{what}: no <{name}> in the answer {body[:200]!r}", transient=True)
    return match.group(1).decode()


def create(obj: S3Object, timeout: float) -> str:
    """A new multipart upload's id."""
    _, body = _request(obj, "POST", "uploads=", b"", timeout, "create multipart upload")
    return _xml_field(body, "UploadId", f"create multipart upload {obj.key}")


def upload_part(obj: S3Object, upload_id: str, number: int, chunk: bytes | memoryview, timeout: float) -> str:
    """Send part `number` (1-based); its ETag."""
    query = f"partNumber={number}&uploadId={quote(upload_id, safe='')}"
    headers, _ = _request(obj, "PUT", query, chunk, timeout, f"upload part {number} of")
    etag = {k.lower(): v for k, v in headers.items()}.get("etag")
    if not etag:
        raise StorageError(f"upload part {number} of {obj.key}: no ETag in the answer", transient=True)
    return etag


def complete(obj: S3Object, upload_id: str, etags: list[str], timeout: float) -> None:
    parts = "".join(f"<Part><PartNumber>{i}</PartNumber><ETag>{escape(e)}</ETag></Part>"
                    for i, e in enumerate(etags, start=1))
    body = f"<CompleteMultipartUpload>{parts}</CompleteMultipartUpload>".encode()
    _, answer = _request(obj, "POST", f"uploadId={quote(upload_id, safe='')}", body, timeout,
                         "complete multipart upload")
    if b"<Error>" in answer:  # S3 may report a failed completion inside a 200 answer
        code = re.search(rb"<Code>([^<]+)</Code>", answer)
        reason = code.group(1).decode() if code else answer[:200].decode(errors="replace")
        raise StorageError(f"complete multipart upload {obj.key}: {reason}", transient=reason == "InternalError")


def abort(obj: S3Object, upload_id: str, timeout: float) -> None:
    _request(obj, "DELETE", f"uploadId={quote(upload_id, safe='')}", b"", timeout, "abort multipart upload")
