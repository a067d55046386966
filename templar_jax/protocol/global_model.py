"""The global model as every neuron of a run holds it: same config, same initial params (seed
from the run version), the same jitted loss, aggregation and outer step, so honest neurons stay
bit-identical after each window. Also the data sets the run trains and evaluates on."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.config import RunConfig
from templar_jax.data import ShardDataset, ensure_bundled_dataset
from templar_jax.data.tokenizer import eos_id_of, load_tokenizer
from jax.sharding import Mesh

from templar_jax.model import init_params, load_model_config, param_shapes
from templar_jax.model.sharding import param_shardings
from templar_jax.model.params import flatten_params
from templar_jax.protocol.aggregator_object import decode_aggregator
from templar_jax.train.loss import loss_fn
from templar_jax.sparseloco import Payload, aggregate, batch_dims_from_names, outer_step
from templar_jax.wire import PayloadError, decode, expected_table

log = logging.getLogger(__name__)


@dataclass
class DataSets:
    train: ShardDataset
    heldout: ShardDataset | None
    pad_id: int | None  # = EOS (SPEC sec. 6); None when the shards come without a tokenizer


def open_datasets(data_path: str, seq_len: int) -> DataSets:
    """`bundled` -> the bundled standard-library corpus; else a folder of shards, optionally
    with `train/` and `heldout/` subfolders."""
    root = ensure_bundled_dataset(seq_len=seq_len) if data_path == "bundled" else Path(data_path)
    train_dir = root / "train" if (root / "train").is_dir() else root
    heldout_dir = root / "heldout" if (root / "heldout").is_dir() else None
    train = ShardDataset(train_dir, seq_len)
    heldout = ShardDataset(heldout_dir, seq_len) if heldout_dir else None
    tok = next((p for p in (root / "tokenizer.json", train_dir / "tokenizer.json") if p.exists()), None)
    pad_id = eos_id_of(load_tokenizer(tok)) if tok else None
    return DataSets(train, heldout, pad_id)


class GlobalModel:
    """Config, params table and the deterministic functions of the outer loop."""

    def __init__(self, settings: RunConfig, *, pad_id: int | None, mesh: Mesh | None = None):
        self.settings = settings
        self.pad_id = pad_id
        self.mesh = mesh
        self.cfg = load_model_config(settings.model.preset, **dict(settings.model.overrides))
        shapes = param_shapes(self.cfg)
        self.shapes_flat = {k: tuple(v) for k, v in flatten_params(shapes).items()}
        self.batch_dims = batch_dims_from_names(self.shapes_flat)
        self.expected = expected_table(self.shapes_flat, batch_dims=self.batch_dims)
        cfg = self.cfg
        self._loss = jax.jit(lambda p, t: loss_fn(p, t, cfg, pad_id, mesh)[0])
        self.shardings = param_shardings(cfg, mesh) if mesh is not None else None

    def params_digest(self, params: dict, max_params: int = 50_000_000) -> str | None:
        """blake2b of every parameter's bytes (sorted names): equal digests = identical models.
        Skipped (None) above `max_params`, where pulling the model to the host costs too much."""
        flat = flatten_params(params)
        if sum(int(np.prod(np.shape(v))) for v in flat.values()) > max_params:
            return None
        h = hashlib.blake2b(digest_size=16)
        for name in sorted(flat):
            h.update(name.encode())
            h.update(np.ascontiguousarray(jax.device_get(flat[name])).tobytes())
        return h.hexdigest()

    def init_params(self) -> dict:
        return init_params(self.cfg, self.settings.run.init_seed, mesh=self.mesh)

    def loss(self, params: dict, tokens_BxL: np.ndarray) -> float:
        return float(self._loss(params, jnp.asarray(tokens_BxL, jnp.int32)))

    def decode_payload(self, data: bytes, *, window: int | None = None, uid: int | None = None) -> Payload:
        want = {"version": self.settings.run.version}
        if window is not None:
            want["window"] = window
        if uid is not None:
            want["uid"] = uid
        payload, _ = decode(data, self.expected, chunk=self.settings.sparseloco.chunk, topk=self.settings.sparseloco.topk,
                            expected_meta=want)
        return payload

    def aggregate(self, payloads: Sequence[Payload], params_like: Mapping[str, Any]) -> dict:
        return aggregate(list(payloads), params_like, rule=self.settings.sparseloco.aggregation_rule,
                         chunk=self.settings.sparseloco.chunk, batch_dims=self.batch_dims,
                         impl=self.settings.sparseloco.impl, mesh=self.mesh)

    def outer_step(self, theta0: dict, payloads: Sequence[Payload]) -> dict:
        """theta0 - alpha * Aggregate(payloads); theta0 itself when there is nothing to apply.
        On a mesh the result keeps the params' shardings."""
        if not payloads:
            return theta0
        params = outer_step(theta0, self.aggregate(payloads, theta0), self.settings.sparseloco.outer_lr)
        return params if self.shardings is None else jax.device_put(params, self.shardings)

    def aggregator_payloads(self, window: int, aggregator_bytes: bytes) -> list[Payload]:
        """The validated payloads inside the leader's `aggregator-{window}` object."""
        raw = decode_aggregator(aggregator_bytes, window=window)
        payloads = []
        for uid in sorted(raw):
            try:
                payloads.append(self.decode_payload(raw[uid], window=window, uid=uid))
            except PayloadError as err:  # the leader only publishes payloads it validated
                raise PayloadError(f"aggregator object of window {window}, uid {uid}: {err}") from None
        return payloads

    def replay(self, params: dict, window: int, aggregator_bytes: bytes) -> dict:
        """Apply the leader's published aggregate of `window` (late join, restart)."""
        return self.outer_step(params, self.aggregator_payloads(window, aggregator_bytes))
