"""Adversarial miners for the demo and tests (what Gauntlet must catch): `Upload`s handed to the
honest miner in place of its own (`templar-jax miner --behavior ...`).

- `honest`: uploads its own compressed pseudo-gradient.
- `copy:UID`: waits until UID has uploaded, takes UID's payload, re-signs it with its own uid
  and window metadata and uploads it as its own (a later uploader with identical indices).
- `noise`: uploads a well-formed payload with random indices and codes (no training signal).
- `corrupt`: uploads bytes that fail validation.
- `overflow`: uploads its own payload with side values that are each finite but decode to inf
  (issue 22: such a peer used to cancel the window's update for everyone); now rejected by
  `decode` as invalid, and dropped by the aggregation itself.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from templar_jax.neurons.upload import MinerView, Upload
from templar_jax.sparseloco import Payload, TensorPayload, chunk_geometry
from templar_jax.storage.keys import gradient_key
from templar_jax.wire.synthetic import overflow_payload


class BehaviorError(ValueError):
    """An unknown or malformed --behavior value."""


class NoiseUpload(Upload):
    name = "noise"

    def __init__(self):
        self.rng: np.random.Generator | None = None  # seeded by the miner's uid on first use
        self.chunk_sizes: dict[str, int] = {}  # of the miner's model, on first use

    def prepare(self, miner: MinerView, payload: Payload, meta: dict) -> bytes:
        model, codec = miner.model, miner.model.codec
        if self.rng is None:
            self.rng = np.random.default_rng(miner.uid)
            self.chunk_sizes = {name: chunk_geometry(shape[model.batch_dims[name]:], chunk=codec.chunk,
                                                     topk=codec.topk).chunk_size
                                for name, shape in model.shapes_flat.items()}
        return codec.encode(noise_payload(jax.device_get(payload), self.chunk_sizes, self.rng), meta)


class CorruptUpload(Upload):
    name = "corrupt"

    def prepare(self, miner: MinerView, payload: Payload, meta: dict) -> bytes:
        data = super().prepare(miner, payload, meta)
        return data[: len(data) // 2] + bytes(len(data) - len(data) // 2)


class OverflowUpload(Upload):
    """Its own indices and codes, with every tensor's shift and lut at float32's largest value:
    each side value is finite, each decoded value lut + shift is inf."""

    name = "overflow"

    def prepare(self, miner: MinerView, payload: Payload, meta: dict) -> bytes:
        return miner.model.codec.encode(overflow_payload(jax.device_get(payload)), meta)


class CopyUpload(Upload):
    """The target's payload of the same window, re-signed as the copier's."""

    name = "copy"

    def __init__(self, target: int):
        self.target = target

    def finalize(self, miner: MinerView, window: int, global_step: int, data: bytes) -> bytes | None:
        victim = miner.peers.bucket(self.target)
        if victim is None:
            return None
        key = gradient_key(window, self.target, miner.model.version)
        stolen = wait_for_object(victim.get, key, timeout_s=miner.clock.upload_span_s * 0.5)
        if stolen is None:
            return None
        payload, meta = miner.model.codec.decode(stolen)
        meta.update(uid=miner.uid, global_step=global_step)
        return miner.model.codec.encode(payload, meta)

    def __str__(self) -> str:
        return f"copy:{self.target}"


def parse_behavior(text: str) -> Upload:
    """`honest`, `noise`, `corrupt`, `overflow` or `copy:UID` -> the miner's Upload."""
    kind, _, arg = text.partition(":")
    simple = {"honest": Upload, "noise": NoiseUpload, "corrupt": CorruptUpload,
              "overflow": OverflowUpload}
    if not arg and kind in simple:
        return simple[kind]()
    if kind == "copy" and arg.isdigit():
        return CopyUpload(int(arg))
    raise BehaviorError(f"unknown behavior {text!r} (honest, noise, corrupt, overflow, copy:UID)")


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


def wait_for_object(get: Callable[[str], bytes], key: str, *, timeout_s: float,
                    poll_s: float = 0.2) -> bytes | None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        try:
            return get(key)
        except Exception:
            time.sleep(poll_s)
    return None
