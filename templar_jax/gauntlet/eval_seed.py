"""The validator's per-window evaluation seed: randomness that does not exist before the upload
deadline, so no miner can know which uids will be evaluated or on which sequences.

    seed(W) = blake2b-128( secret || block_hash(B) || W || validator_seed )

B is the first block whose timestamp is at or after the close of W's upload window (its hash is
not known to anyone before every upload of W is in), and `secret` is 32 random bytes the
validator creates on its first start and keeps in its run folder (so a block producer who could
grind a block hash still cannot predict the seed). The seed picks the evaluated uids and the own
and random evaluation sequences. Each window's draw (window, block, block hash, the secret's
SHA-256, seed) is recorded in the validator's state and event log: an auditor given the secret
can recompute every seed and check the secret against its recorded digest.

Miners' assigned data stays a public function of (uid, window) (data/sampler.py).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import NamedTuple

from templar_jax.gauntlet.errors import StateError

SECRET_BYTES = 32


class EvalDraw(NamedTuple):
    """What one window's evaluation seed was made of (enough to audit it given the secret)."""

    window: int
    block: int
    block_hash: str
    secret_sha256: str
    seed: int  # < 2**128


def secret_digest(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def evaluation_seed(secret: bytes, block_hash: str, window: int, validator_seed: int = 0) -> int:
    """The 128-bit seed of `window` (see the module docstring)."""
    h = hashlib.blake2b(digest_size=16)
    for part in (secret, str(block_hash).encode(), str(int(window)).encode(), str(int(validator_seed)).encode()):
        h.update(len(part).to_bytes(4, "little") + part)  # length-prefixed: no ambiguous joins
    return int.from_bytes(h.digest(), "little")


def draw(secret: bytes, window: int, block: int, block_hash: str, validator_seed: int = 0) -> EvalDraw:
    return EvalDraw(int(window), int(block), str(block_hash), secret_digest(secret),
                    evaluation_seed(secret, block_hash, window, validator_seed))


def load_or_create_secret(path: str | os.PathLike) -> bytes:
    """The validator's local secret: read it, or create it (32 random bytes, mode 0600) on first start."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_bytes(SECRET_BYTES))
            handle.flush()
            os.fsync(handle.fileno())
    try:
        secret = path.read_bytes()
    except OSError as exc:
        raise StateError(f"cannot read the evaluation secret {path}: {exc}") from exc
    if len(secret) != SECRET_BYTES:
        raise StateError(f"evaluation secret {path} holds {len(secret)} bytes, expected {SECRET_BYTES}")
    return secret
