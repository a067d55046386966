"""Adversarial miner behaviours for the demo and tests (what Gauntlet must catch).

- `honest`: uploads its own compressed pseudo-gradient.
- `copy:UID`: waits until UID has uploaded, takes UID's payload, re-signs it with its own uid
  and window metadata and uploads it as its own (a later uploader with identical indices).
- `noise`: uploads a well-formed payload with random indices and codes (no training signal).
- `corrupt`: uploads bytes that fail validation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from templar_jax.sparseloco import Payload, TensorPayload


class BehaviorError(ValueError):
    """An unknown or malformed --behavior value."""


@dataclass(frozen=True)
class Behavior:
    kind: str  # honest | copy | noise | corrupt
    target: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Behavior":
        kind, _, arg = text.partition(":")
        if kind in ("honest", "noise", "corrupt") and not arg:
            return cls(kind)
        if kind == "copy" and arg.isdigit():
            return cls(kind, int(arg))
        raise BehaviorError(f"unknown behavior {text!r} (honest, noise, corrupt, copy:UID)")

    def __str__(self) -> str:
        return f"copy:{self.target}" if self.kind == "copy" else self.kind


def noise_payload(like: Payload, chunk_sizes: dict[str, int], rng: np.random.Generator) -> Payload:
    """Random sorted distinct indices and random codes with the shapes of a real payload, with
    the lookup table inflated so the noise is large."""
    out = {}
    for name, tp in like.items():
        idx = np.asarray(tp.idx)
        *lead, k = idx.shape
        chunk_size = chunk_sizes[name]
        keys = rng.random((*lead, chunk_size))
        new_idx = np.sort(np.argsort(keys, axis=-1)[..., :k], axis=-1).astype(idx.dtype)
        codes = rng.integers(0, 4, size=idx.shape, dtype=np.uint8)
        scale = np.asarray(tp.scale)
        lut = np.asarray(tp.lut) * rng.choice([-4.0, 4.0], size=np.shape(tp.lut)).astype(np.float32)
        out[name] = TensorPayload(new_idx, codes, np.asarray(tp.shift), scale, lut.astype(np.float32))
    return out


def wait_for_object(get, key: str, *, timeout_s: float, poll_s: float = 0.2) -> bytes | None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            return get(key)
        except Exception:
            time.sleep(poll_s)
    return None
