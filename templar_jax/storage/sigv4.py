"""Minimal AWS Signature Version 4 (header-based, per the AWS SigV4 documentation).

tensorstore moves most bytes, but it does not expose an object's Last-Modified (storage.metadata
sends its own HEAD) and has no multipart upload (storage.s3_multipart sends those requests).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:
    from templar_jax.storage.s3_credentials import S3Credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def s3_object_url(endpoint: str, bucket: str, key: str) -> str:
    """Path-style URL of one object, URI-encoded once (as S3 signs it)."""
    return f"{endpoint.rstrip('/')}/{quote(bucket, safe='')}/{quote(key, safe='/~')}"


def s3_auth_headers(credentials: S3Credentials | None, method: str, url: str, *, region: str,
                    body: bytes | memoryview = b"") -> dict[str, str]:
    """`sign_headers` for `credentials` and `body` ({} for an anonymous request: no hashing)."""
    if credentials is None:
        return {}
    return sign_headers(method, url, region=region, access_key_id=credentials.access_key_id,
                        secret_access_key=credentials.secret_access_key,
                        session_token=credentials.session_token, payload_sha256=hashlib.sha256(body).hexdigest())


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign_headers(
    method: str, url: str, *, region: str, access_key_id: str, secret_access_key: str,
    session_token: str | None = None, now: dt.datetime | None = None, service: str = "s3",
    payload_sha256: str = EMPTY_SHA256,
) -> dict[str, str]:
    """Headers (Host, x-amz-*, Authorization) that sign `method url` with a body whose SHA-256 hex
    digest is `payload_sha256` (default: an empty body)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    datestamp = now.strftime("%Y%m%d")
    parts = urlsplit(url)
    host = parts.netloc
    canonical_uri = parts.path or "/"  # callers pass an already URI-encoded path (S3: no double encoding)
    query = "&".join(sorted(
        f"{quote(unquote(k), safe='~')}={quote(unquote(v), safe='~')}"  # the URL's query arrives encoded
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    ))
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date}
    if session_token:
        headers["x-amz-security-token"] = session_token
    signed = ";".join(sorted(headers))
    canonical_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
    canonical_request = "\n".join([method, canonical_uri, query, canonical_headers, signed, payload_sha256])
    scope = f"{datestamp}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_access_key).encode(), datestamp)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    out = {k: v for k, v in headers.items() if k != "host"}
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, "
                            f"SignedHeaders={signed}, Signature={signature}")
    return out
