"""The miner's window loop (SPEC sec. 1-2).

Per window W: train H inner steps from theta0 on the assigned data; pseudo-gradient
delta = theta0 - theta_H; SparseLoCo compress with error feedback; encode; upload right after
W+1 starts (plus the debug object with a few parameter values for the sync check); after the
upload window closes, gather the leader's peer list (reserve fill-in), aggregate, and apply the
same outer step as everyone: theta_next = theta0 - alpha * agg. A miner that falls behind skips
training for a window but still applies that window's outer step, so it stays in sync.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax
import numpy as np

from templar_jax.checkpoint import (
    CheckpointError,
    LocalCheckpoints,
    TrainingState,
    restore_training_state,
    save_training_state,
)
from templar_jax.data import miner_pool, sample_digest, trained_indices
from templar_jax.gauntlet import debug_object
from templar_jax.model.params import flatten_params
from templar_jax.neurons import clock
from templar_jax.neurons.catchup import rebuild_params
from templar_jax.neurons.behaviors import Behavior, noise_payload, wait_for_object
from templar_jax.neurons.common import NeuronBase
from templar_jax.neurons.exchange import gather_window, select_contributors
from templar_jax.train.inner import InnerTrainer
from templar_jax.sparseloco import SparseLoCoState, chunk_geometry, sparseloco
from templar_jax.storage.errors import StorageError
from templar_jax.storage.keys import debug_key, gradient_key
from templar_jax.wire import PayloadError, decode, encode

log = logging.getLogger(__name__)

GATHER_MARGIN_S = 0.3  # after the upload window closes, so every valid upload is visible
TRAIN_MARGIN_S = 1.0  # inner steps stop this long before the window ends (compress + encode)


class Miner(NeuronBase):
    role = "miner"

    def __init__(self, settings, *, hotkey: str, run_dir: str | Path, behavior: str = "honest",
                 register_stake: float | None = None):
        super().__init__(settings, hotkey=hotkey, run_dir=run_dir, register_stake=register_stake)
        self.behavior = Behavior.parse(behavior)
        self.trainer = InnerTrainer(self.model.cfg, settings.inner, accum_steps=settings.inner.accum_steps,
                                    pad_id=self.data.pad_id, mesh=self.model.mesh)
        self.tx = sparseloco(beta=settings.sparseloco.error_decay, topk=settings.sparseloco.topk, chunk=settings.sparseloco.chunk,
                             batch_dims=self.model.batch_dims, impl=settings.sparseloco.impl,
                             mesh=self.model.mesh)
        self.rng = np.random.default_rng(self.uid)
        self.resume = (LocalCheckpoints(self._resume_dir(), max_to_keep=2)
                       if settings.run.resume_interval_windows > 0 else None)
        self.chunk_sizes = {
            name: chunk_geometry(shape[self.model.batch_dims[name]:], chunk=settings.sparseloco.chunk,
                                 topk=settings.sparseloco.topk).chunk_size
            for name, shape in self.model.shapes_flat.items()}

    # -- one window ---------------------------------------------------------------------
    def _train(self, params, opt_state, window: int):
        s = self.settings
        pool = miner_pool(self.uid, window, self.data.train.n_samples, s.inner.steps, s.inner.target_batch)
        rows = trained_indices(pool, s.inner.steps, s.inner.batch)
        batches = [self.data.train.samples(r) for r in rows]
        deadline = clock.window_start_time(self.chain, window + 1) - TRAIN_MARGIN_S
        params, opt_state, losses = self.trainer.run(params, opt_state, batches, deadline=deadline)
        if len(losses) < len(batches):
            log.warning("window %d: trained %d of %d inner steps before the upload deadline", window,
                        len(losses), len(batches))
        digest = sample_digest(self.data.train.ids(pool))
        return params, opt_state, losses, digest, len(pool), len(losses)

    def _payload_bytes(self, payload, window: int, digest: str, count: int, global_step: int) -> bytes:
        if self.behavior.kind == "noise":
            payload = noise_payload(jax.device_get(payload), self.chunk_sizes, self.rng)
        meta = {"window": window, "uid": self.uid, "global_step": global_step, "sample_digest": digest,
                "sample_count": count, "version": self.settings.run.version}
        data = encode(jax.device_get(payload), meta, expected=self.model.expected,
                      index_coding=self.settings.sparseloco.wire_index_coding, chunk=self.settings.sparseloco.chunk,
                      topk=self.settings.sparseloco.topk)
        if self.behavior.kind == "corrupt":
            data = data[: len(data) // 2] + bytes(len(data) - len(data) // 2)
        return data

    def _copy_victim(self, window: int, global_step: int) -> bytes | None:
        """The copier's upload: the target's payload re-signed as ours."""
        victim = self.peers.bucket(self.behavior.target)
        if victim is None:
            return None
        key = gradient_key(window, self.behavior.target, self.settings.run.version)
        data = wait_for_object(victim.get, key, timeout_s=self.settings.peers.upload_window_s * 0.5)
        if data is None:
            return None
        payload, meta = decode(data, self.model.expected, chunk=self.settings.sparseloco.chunk, topk=self.settings.sparseloco.topk)
        meta.update(uid=self.uid, global_step=global_step)
        return encode(payload, meta, expected=self.model.expected, index_coding=self.settings.sparseloco.wire_index_coding,
                      chunk=self.settings.sparseloco.chunk, topk=self.settings.sparseloco.topk)

    def _window_payloads(self, window: int):
        """The payloads every honest neuron aggregates for `window` (peer list + reserves)."""
        s = self.settings
        miners, buckets = self.peer_view()
        peers = self.peer_list(window, miners)
        got = gather_window(window, peers.gather + peers.reserve, buckets,
                            upload=clock.WindowClock(self.chain, upload_span_s=s.peers.upload_window_s).upload_window(window),
                            version=s.run.version, expected=self.model.expected, deadline_s=s.peers.gather_timeout_s,
                            chunk=s.sparseloco.chunk, topk=s.sparseloco.topk)
        contributors = select_contributors(peers, got.valid)
        return [got.valid[u] for u in contributors], contributors, got

    def _apply_window(self, theta0, window: int):
        payloads, contributors, got = self._window_payloads(window)
        return self.model.outer_step(theta0, payloads), contributors, got

    # -- start-up: resume, late join --------------------------------------------------------
    def _resume_dir(self) -> Path:
        return self.run_dir / f"miner-{self.uid}-resume"

    def _start_state(self, start: int, window: int):
        """(params at the start of `window`, inner optimizer state, error feedback).

        A local resume checkpoint gives params/opt/EF as of the window it was saved after; the
        leader's checkpoint + published aggregates fill the windows since (late join, restart).
        """
        params0 = self.model.init_params()
        opt_state, ef_state = self.trainer.init(params0), self.tx.init(params0)
        base = None
        if self.resume is not None and self.resume.latest_step() is not None:
            try:
                saved = restore_training_state(self.resume, params_like=params0, opt_state_like=opt_state,
                                               error_feedback_like=ef_state.error,
                                               expect_version=self.settings.run.version)
                base = (saved.params, saved.window)
                opt_state, ef_state = saved.opt_state, SparseLoCoState(saved.error_feedback)
                log.info("resumed from local checkpoint of window %d", saved.window)
            except CheckpointError as err:
                log.warning("local resume checkpoint unusable (%s); joining as a new peer", err)
        if base is None and window <= start:
            return params0, opt_state, ef_state
        _, leader = self.leader_bucket()
        rebuilt = rebuild_params(self.model, leader, start=start, upto=window, base=base,
                                 cache_dir=self.run_dir / f"miner-{self.uid}-fetched",
                                 fallback=lambda w: self._window_payloads(w)[0])
        self.events.emit("caught_up", window=window, checkpoint_window=rebuilt.checkpoint_window,
                         resumed_from=None if base is None else base[1], applied=len(rebuilt.applied),
                         skipped=len(rebuilt.skipped))
        log.info("caught up to window %d: checkpoint %s, replayed %d windows, %d missing", window,
                 rebuilt.checkpoint_window, len(rebuilt.applied), len(rebuilt.skipped))
        return rebuilt.params, opt_state, ef_state

    def _save_resume(self, params, opt_state, ef_state, window: int, start: int) -> None:
        interval = self.settings.run.resume_interval_windows
        if self.resume is None or (window - start + 1) % interval:
            return
        save_training_state(self.resume, TrainingState(params, opt_state, ef_state.error, window,
                                                       window - start + 1), version=self.settings.run.version)

    def _contribute(self, theta0, opt_state, ef_state, window: int, start: int):
        """Train, compress and encode during `window`; upload once `window + 1` begins."""
        t0 = time.time()
        params_h, opt_state, losses, digest, count, steps = self._train(theta0, opt_state, window)
        delta = jax.tree.map(lambda a, b: a - b, theta0, params_h)
        payload, ef_state = self.tx.update(delta, ef_state, null_round=self.is_null_round(window, start))
        data = self._payload_bytes(payload, window, digest, count, window - start)
        compute_s = time.time() - t0
        clock.wait_for_window(self.chain, window + 1)
        t_up = time.time()
        uploaded = False
        try:
            if self.behavior.kind == "copy":
                data = self._copy_victim(window, window - start)
            if data is not None:
                key = gradient_key(window, self.uid, self.settings.run.version)
                self.bucket.put(key, data)
                dbg = debug_object(flatten_params(theta0), self.sample_positions, window)
                self.bucket.put(debug_key(window, self.uid, self.settings.run.version), json.dumps(dbg).encode())
                uploaded = True
        except (StorageError, PayloadError) as err:  # this window's upload is lost; the loop goes on
            log.error("window %d: upload failed (%s)", window, err)
        return opt_state, ef_state, {"train_loss": float(np.mean(losses)), "inner_steps": steps,
                                     "uploaded": uploaded, "compute_s": compute_s,
                                     "upload_s": time.time() - t_up}

    # -- the loop -------------------------------------------------------------------------
    def run(self, windows: int | None = None) -> int:
        s = self.settings
        start = self.wait_start_window()
        window = max(start, self.chain.current_window())
        params, opt_state, ef_state = self._start_state(start, window)
        last = start + windows - 1 if windows else None
        self.events.emit("started", behavior=str(self.behavior), start_window=start, window=window)
        while last is None or window <= last:
            theta0 = params
            on_time = self.chain.current_window() == window
            if on_time:
                opt_state, ef_state, stats = self._contribute(theta0, opt_state, ef_state, window, start)
            else:
                stats = {"train_loss": None, "inner_steps": 0, "uploaded": False, "compute_s": 0.0,
                         "upload_s": 0.0}
                log.warning("window %d: behind the chain (now %d); skipping training", window,
                            self.chain.current_window())
            clock.wait_until(clock.window_start_time(self.chain, window + 1) + s.peers.upload_window_s + GATHER_MARGIN_S)
            t_gather = time.time()
            params, contributors, got = self._apply_window(theta0, window)
            self._save_resume(params, opt_state, ef_state, window, start)
            comm_s = stats.pop("upload_s") + (time.time() - t_gather)  # clock waits are not counted
            self.events.emit("window", window=window, **stats, comm_s=comm_s,
                             params_digest=self.model.params_digest(params), behavior=str(self.behavior),
                             gathered=contributors, skipped=got.failed,
                             null_round=self.is_null_round(window, start), status="ok" if on_time else "behind")
            log.info("window %d: loss %s, applied %d peers %s, skipped %s", window,
                     "-" if stats["train_loss"] is None else f"{stats['train_loss']:.4f}", len(contributors),
                     contributors, {u: r.split(":")[0] for u, r in got.failed.items()})
            window += 1
        self.events.emit("stopped", window=window - 1)
        return 0
