"""Adversarial miners for the demo and tests (what Gauntlet must catch): `Upload`s handed to the
honest miner in place of its own (`templar-jax miner --behavior ...`).

- `honest`: uploads its own compressed pseudo-gradient.
- `copy:UID`: waits until UID has uploaded, takes UID's payload, re-signs it with its own uid
  and window metadata and uploads it as its own (a later uploader with identical indices).
- `copy-perturb:UID`: the same copy with 1/8 of the indices of each sparse chunk moved and the
  values jittered, so it is not byte-identical to its source.
- `noise`: uploads a well-formed payload with random indices and codes (no training signal).
- `corrupt`: uploads bytes that fail validation.
- `overflow`: uploads its own payload with side values that are each finite but decode to inf
  (issue 22: such a peer used to cancel the window's update for everyone); now rejected by
  `decode` as invalid, and dropped by the aggregation itself.
- `evaltrain`: trains on the random-data sequences the validator would score it on if evaluation
  were still predictable (validator seed 0, the draw of the first version), not on its assigned
  data (its own-data evaluation sequences are part of that data: training on them is honest work).
- `freeride`: discards its own training and uploads the freshest published aggregate (the
  leader's `aggregator-(W-1)`, else `aggregator-(W-2)`, aggregated and compressed again) as its own.
- `replay`: trains once, then uploads that payload again every window, re-signed for each.
- `late`: uploads its own payload after the upload window closed.
"""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from templar_jax.data import validator_random_indices
from templar_jax.neurons.clock import wait_until
from templar_jax.neurons.upload import MinerView, Upload
from templar_jax.sparseloco import Payload, TensorPayload, chunk_geometry, compress_dense
from templar_jax.sparseloco.tree import flatten
from templar_jax.storage.keys import aggregator_key, gradient_key
from templar_jax.wire.synthetic import overflow_payload


class BehaviorError(ValueError):
    """An unknown or malformed --behavior value."""


def chunk_sizes(miner: MinerView) -> dict[str, int]:
    """Elements per chunk of each of the miner's parameters (name -> size)."""
    model, codec = miner.model, miner.model.codec
    return {name: chunk_geometry(shape[model.batch_dims[name]:], chunk=codec.chunk, topk=codec.topk).chunk_size
            for name, shape in model.shapes_flat.items()}


class NoiseUpload(Upload):
    name = "noise"

    def __init__(self):
        self.rng: np.random.Generator | None = None  # seeded by the miner's uid on first use
        self.chunk_sizes: dict[str, int] = {}  # of the miner's model, on first use

    def prepare(self, miner: MinerView, payload: Payload, meta: dict) -> bytes:
        if self.rng is None:
            self.rng, self.chunk_sizes = np.random.default_rng(miner.uid), chunk_sizes(miner)
        return miner.model.codec.encode(noise_payload(jax.device_get(payload), self.chunk_sizes, self.rng), meta)


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
        return f"{self.name}:{self.target}"


class PerturbedCopyUpload(CopyUpload):
    """The target's payload with a few indices moved and its values jittered (so neither the
    bytes nor every index match the source), re-signed as the copier's."""

    name = "copy-perturb"

    def __init__(self, target: int, *, moved_fraction: float = 1 / 8):
        super().__init__(target)
        self.moved_fraction = moved_fraction
        self.rng: np.random.Generator | None = None

    def finalize(self, miner: MinerView, window: int, global_step: int, data: bytes) -> bytes | None:
        copied = super().finalize(miner, window, global_step, data)
        if copied is None:
            return None
        if self.rng is None:
            self.rng = np.random.default_rng(miner.uid)
        payload, meta = miner.model.codec.decode(copied)
        payload = perturbed_payload(payload, chunk_sizes(miner), self.rng, self.moved_fraction)
        return miner.model.codec.encode(payload, meta)


class EvalDataUpload(Upload):
    """Trains only on the random-data sequences a validator with the first version's fixed seed
    (0) would score every miner on, repeated to fill its batches, never on its assigned data."""

    name = "evaltrain"

    def training_rows(self, miner: MinerView, window: int, rows: np.ndarray) -> np.ndarray:
        predicted = validator_random_indices(window, miner.data.train.n_samples, validator_seed=0,
                                             n=miner.cfg.validator.eval_sequences)
        return np.resize(predicted, rows.shape).astype(np.int64)


class FreeRideUpload(Upload):
    """The freshest aggregate published when the upload opens (the previous window's, else the
    one before), compressed again and uploaded as its own update; nothing when neither is there."""

    name = "freeride"

    def finalize(self, miner: MinerView, window: int, global_step: int, data: bytes) -> bytes | None:
        model, codec = miner.model, miner.model.codec
        _, leader = miner.leader_bucket()
        for source in (window - 1, window - 2):
            raw = wait_for_object(leader.get, aggregator_key(source, model.version), timeout_s=0.0) if leader else None
            applied = model.aggregator_payloads(source, raw) if raw is not None else []
            if applied:
                stale = compress_dense(flatten(model.aggregate(applied, model.shapes_flat)), topk=codec.topk,
                                       chunk=codec.chunk, batch_dims=model.batch_dims)
                return codec.encode(stale, codec.decode(data)[1])
        return None


class ReplayUpload(Upload):
    """Trains once: from its first real window on (after the null rounds) it uploads that
    window's payload again every window, re-signed for each (the stale payload a peer that
    stopped training would keep collecting on)."""

    name = "replay"

    def __init__(self):
        self.kept: bytes | None = None

    def finalize(self, miner: MinerView, window: int, global_step: int, data: bytes) -> bytes | None:
        if self.kept is None:
            if global_step >= miner.cfg.run.null_rounds:
                self.kept = data
            return data
        codec = miner.model.codec
        payload, meta = codec.decode(self.kept)
        meta.update(window=window, global_step=global_step)
        return codec.encode(payload, meta)


class LateUpload(Upload):
    """Its own payload, put in the bucket once the upload window has closed."""

    name = "late"

    def finalize(self, miner: MinerView, window: int, global_step: int, data: bytes) -> bytes | None:
        wait_until(miner.clock.upload_window(window).end + 0.2)
        return data


SIMPLE = {cls.name: cls for cls in (Upload, NoiseUpload, CorruptUpload, OverflowUpload, EvalDataUpload,
                                    FreeRideUpload, ReplayUpload, LateUpload)}
TARGETED = {cls.name: cls for cls in (CopyUpload, PerturbedCopyUpload)}  # NAME:UID


def parse_behavior(text: str) -> Upload:
    """A name of SIMPLE, or `copy:UID` / `copy-perturb:UID` -> the miner's Upload."""
    kind, _, arg = text.partition(":")
    if not arg and kind in SIMPLE:
        return SIMPLE[kind]()
    if kind in TARGETED and arg.isdigit():
        return TARGETED[kind](int(arg))
    names = ", ".join([*SIMPLE, *(f"{k}:UID" for k in TARGETED)])
    raise BehaviorError(f"unknown behavior {text!r} ({names})")


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


def perturbed_payload(payload: Payload, chunk_sizes: dict[str, int], rng: np.random.Generator,
                      moved_fraction: float) -> Payload:
    """`payload` with `moved_fraction` of each sparse chunk's indices replaced by unused ones
    (their codes kept), one code in eight redrawn and the lookup table scaled by up to +-10%.
    Chunks sent whole (k == chunk size) keep their indices: there is no unused one to move to."""
    out = {}
    for name, tp in payload.items():
        idx, codes = np.asarray(tp.idx), np.asarray(tp.codes).copy()
        *lead, k = idx.shape
        size = chunk_sizes[name]
        moved = int(k * moved_fraction)
        if 0 < moved and k < size:
            rows, codes = idx.reshape(-1, k).astype(np.int64), codes.reshape(-1, k)
            n = len(rows)
            keys = rng.random((n, size))
            np.put_along_axis(keys, rows, np.inf, axis=-1)  # never pick an index already there
            fresh = np.argsort(keys, axis=-1)[:, :moved]
            slots = np.argsort(rng.random((n, k)), axis=-1)[:, :moved]
            np.put_along_axis(rows, slots, fresh, axis=-1)
            order = np.argsort(rows, axis=-1)
            idx = np.take_along_axis(rows, order, -1).reshape(idx.shape).astype(np.asarray(tp.idx).dtype)
            codes = np.take_along_axis(codes, order, -1).reshape(np.shape(tp.codes))
        redraw = rng.random(codes.shape) < 1 / 8
        codes = np.where(redraw, rng.integers(0, 4, size=codes.shape, dtype=np.uint8), codes).astype(np.uint8)
        lut = (np.asarray(tp.lut) * rng.uniform(0.9, 1.1, size=np.shape(tp.lut))).astype(np.float32)
        out[name] = TensorPayload(idx, codes, np.asarray(tp.shift), np.asarray(tp.scale), lut)
    return out


def wait_for_object(get: Callable[[str], bytes], key: str, *, timeout_s: float,
                    poll_s: float = 0.2) -> bytes | None:
    """get(key), retried until `timeout_s` passed (tried at least once); None if it never worked."""
    deadline = time.time() + timeout_s
    while True:
        try:
            return get(key)
        except Exception:
            if time.time() >= deadline:
                return None
            time.sleep(poll_s)
