"""S3 / R2 access keys: the one credential type the bucket, its URL parsing and HEAD requests share.

Kept in a module of its own, below bucket.py, location.py, metadata.py and credentials.py (the
on-chain commitment), so none of them needs another to name it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _redact(value: str | None) -> str:
    if not value:
        return "None"
    return f"{value[:4]}…({len(value)} chars)"


@dataclass(frozen=True)
class S3Credentials:
    """Access key pair for S3 / R2. Never printed in full."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return f"S3Credentials(access_key_id={_redact(self.access_key_id)}, secret_access_key=<redacted>)"

    __str__ = __repr__

    @classmethod
    def from_env(cls, prefix: str = "TEMPLAR_S3_") -> S3Credentials | None:
        """{prefix}ACCESS_KEY_ID / {prefix}SECRET_ACCESS_KEY [/ {prefix}SESSION_TOKEN], or None."""
        key_id = os.environ.get(prefix + "ACCESS_KEY_ID")
        secret = os.environ.get(prefix + "SECRET_ACCESS_KEY")
        if not key_id or not secret:
            return None
        return cls(key_id, secret, os.environ.get(prefix + "SESSION_TOKEN") or None)
