"""The global model as every peer of a run holds it: same config, same initial params (seed
from the run version), the same jitted loss, wire format, aggregation and outer step, so honest
neurons stay bit-identical after each window, and a finished run can be replayed from the
leader's published aggregates (`templar_jax.evaluate.from_run`)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from templar_jax.config import RunConfig
from templar_jax.model import init_params, load_model_config, param_batch_dims, param_shapes
from templar_jax.model.params import flatten_params
from templar_jax.multihost.arrays import host_array
from templar_jax.model.sharding import param_shardings
from templar_jax.protocol.aggregator_object import decode_aggregator
from templar_jax.protocol.codec import PayloadCodec
from templar_jax.sparseloco import Payload, aggregate, outer_step
from templar_jax.sparseloco.densify import densify_tensors
from templar_jax.sparseloco.streamed import aggregate_streamed
from templar_jax.sparseloco.tree import flatten, restructure
from templar_jax.train.loss import loss_fn
from templar_jax.wire import PayloadError, expected_table

log = logging.getLogger(__name__)


class GlobalModel:
    """Config, params table and the deterministic functions of the outer loop."""

    def __init__(self, run_config: RunConfig, *, pad_id: int | None, mesh: Mesh | None = None):
        self.run_config = run_config
        self.version = run_config.run.version
        self.pad_id = pad_id
        self.mesh = mesh
        self.cfg = load_model_config(run_config.model.preset, **dict(run_config.model.overrides))
        shapes = param_shapes(self.cfg)
        self.shapes_flat = {k: tuple(v) for k, v in flatten_params(shapes).items()}
        self.batch_dims = param_batch_dims(self.cfg)
        self.expected = expected_table(self.shapes_flat, batch_dims=self.batch_dims)
        slc = run_config.sparseloco
        self.codec = PayloadCodec(self.expected, chunk=slc.chunk, topk=slc.topk, index_coding=slc.wire_index_coding,
                                  workers=run_config.peers.decode_workers)
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
            h.update(np.ascontiguousarray(host_array(flat[name])).tobytes())  # also across processes
        return h.hexdigest()

    def init_params(self) -> dict:
        return init_params(self.cfg, self.run_config.run.init_seed, mesh=self.mesh)

    def loss(self, params: dict, tokens_BxL: np.ndarray) -> float:
        return float(self._loss(params, jnp.asarray(tokens_BxL, jnp.int32)))

    def decode_payload(self, data: bytes, *, window: int | None = None, uid: int | None = None) -> Payload:
        want = {"version": self.version}
        if window is not None:
            want["window"] = window
        if uid is not None:
            want["uid"] = uid
        return self.codec.decode(data, expected_meta=want)[0]

    def aggregate(self, payloads: Sequence[Payload], params_like: Mapping[str, Any]) -> dict:
        slc = self.run_config.sparseloco
        return aggregate(list(payloads), params_like, rule=slc.aggregation_rule, chunk=slc.chunk,
                         batch_dims=self.batch_dims, impl=slc.impl, kernel=slc.kernel,
                         mesh=self.mesh)

    def aggregate_streamed(self, payloads: Sequence[Mapping[str, Any]], params_like: Mapping[str, Any]) -> dict:
        """`aggregate`'s result (bit-identical on CPU) built one peer at a time, so its temporaries
        do not grow with the number of peers (`sparseloco.streamed`): for payloads read lazily
        (the validator's spool). Always the pure-JAX core, adding the peers in order."""
        slc = self.run_config.sparseloco
        return aggregate_streamed(list(payloads), params_like, rule=slc.aggregation_rule, chunk=slc.chunk,
                                  batch_dims=self.batch_dims, mesh=self.mesh)

    def outer_step(self, theta0: dict, payloads: Sequence[Payload]) -> dict:
        """theta0 - alpha * Aggregate(payloads); theta0 itself when there is nothing to apply.
        On a mesh the result keeps the params' shardings."""
        if not payloads:
            return theta0
        return self.apply(theta0, self.aggregate(payloads, theta0))

    def with_update(self, theta0: dict, payload: Payload, *, clip_norm: Mapping[str, Any] | None,
                    step: float) -> dict:
        """theta0 - step * (one peer's dense update, norm-clipped to `clip_norm`), built one
        parameter at a time, so the whole dense update never exists beside theta0 and the result
        (at 1B, 4.6 GB less in the validator's evaluation). The same ops per leaf as
        `densify` then `theta0 - step * update`: bit-identical."""
        flat0 = flatten(theta0)
        out = {}
        for name, update in densify_tensors(payload, theta0, clip_norm=clip_norm,
                                            chunk=self.run_config.sparseloco.chunk, batch_dims=self.batch_dims):
            out[name] = flat0[name] - step * update
            del update  # before the next parameter's is built
        return restructure(theta0, out)

    def apply(self, theta0: dict, aggregate: dict) -> dict:
        """theta0 - alpha * aggregate (`outer_step` for a caller that also needs the aggregate)."""
        params = outer_step(theta0, aggregate, self.run_config.sparseloco.outer_lr)
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
