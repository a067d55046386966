"""The miner's window loop (SPEC sec. 1-2).

Per window W: train H inner steps from theta0 on the assigned data until the clock's train
deadline; pseudo-gradient delta = theta0 - theta_H; SparseLoCo compress with error feedback;
encode; upload once W+1 starts (plus the debug object with a few parameter values for the sync
check); at the clock's gather time, gather the leader's peer list (reserve fill-in), aggregate,
and apply the same outer step as everyone: theta_next = theta0 - alpha * agg. A miner that falls
behind skips training for a window but still applies that window's outer step, so it stays in sync.

With run config `sparseloco.overlap` the upload, gather and outer step of W run on a comm thread
while W+1 trains (neurons/overlap.py, docs/overlap.md); the global params are the same.
Every phase is logged as a `phase` event (start, end, lane: main or comm) for the timeline.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

from templar_jax.checkpoint import (
    CheckpointError,
    LocalCheckpoints,
    TrainingState,
    restore_training_state,
    save_training_state,
)
from templar_jax.config import RunConfigError
from templar_jax.data import miner_pool, sample_digest, trained_indices
from templar_jax.gauntlet import debug_object
from templar_jax.model.offload import StateOffload, fresh_device_copy, to_device
from templar_jax.model.params import flatten_params
from templar_jax.neurons.catchup import rebuild_params
from templar_jax.neurons.common import NeuronBase, NeuronParts
from templar_jax.neurons.overlap import Landing, SerialChain
from templar_jax.neurons.upload import Upload
from templar_jax.neurons.window_state import Contribution, Exchanged, Gathered, MinerState, Pending, Prepared
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.sparseloco import SparseLoCoState, sparseloco
from templar_jax.storage.errors import StorageError
from templar_jax.storage.keys import debug_key, gradient_key
from templar_jax.train.inner import InnerTrainer
from templar_jax.train.optimizer import at_schedule_step, global_inner_step
from templar_jax.wire import PayloadError

log = logging.getLogger(__name__)

COMM_THREAD = "comm"  # name prefix of the overlap's comm thread


def inner_trainer(model: GlobalModel) -> InnerTrainer:
    """The miner's inner loop on `model` (its run config's `inner` section); warm-up compiles this one."""
    inner = model.run_config.inner
    return InnerTrainer(model.cfg, inner, accum_steps=inner.accum_steps, pad_id=model.pad_id, mesh=model.mesh)


def compressor(model: GlobalModel):
    """The miner's SparseLoCo transform (run config `sparseloco`); warm-up compiles this one."""
    slc = model.run_config.sparseloco
    return sparseloco(beta=slc.error_decay, topk=slc.topk, chunk=slc.chunk, batch_dims=model.batch_dims,
                      impl=slc.impl, kernel=slc.kernel, mesh=model.mesh)


class Trained(NamedTuple):
    params: dict  # theta_H
    opt_state: object
    losses: list[float]  # one per inner step taken
    sample_digest: str  # of the assigned pool (SPEC sec. 6)
    sample_count: int


class Miner(NeuronBase):
    role = "miner"

    def __init__(self, parts: NeuronParts, *, upload: Upload | None = None):
        super().__init__(parts)
        cfg = self.cfg
        self.upload = upload or Upload()
        self.trainer, self.tx = inner_trainer(self.model), compressor(self.model)
        devices = self.model.mesh.devices.flat if self.model.mesh is not None else jax.local_devices()[:1]
        self.offload = StateOffload.from_section(cfg.offload, devices)
        self.resume = (LocalCheckpoints(self._resume_dir(), max_to_keep=2)
                       if cfg.run.resume_interval_windows > 0 else None)
        # overlap: each window's upload, gather and outer step run here, one after the other
        if cfg.sparseloco.overlap and jax.process_count() > 1:
            # each process would launch the outer step and land it between its own inner steps:
            # the sharded programs' order (and the landing step) could differ between processes
            raise RunConfigError("sparseloco.overlap: not supported for a miner spanning several processes yet")
        self.comm = ThreadPoolExecutor(1, thread_name_prefix=COMM_THREAD) if cfg.sparseloco.overlap else None
        if self.comm is not None:  # both threads read the chain (clock, peer list): one call at a time
            self.chain = self.clock.chain = self.peers.chain = SerialChain(self.chain)

    # -- one window ---------------------------------------------------------------------
    def _train(self, params, opt_state, window: int, start: int, before_step=None) -> Trained:
        inner = self.cfg.inner
        train = self.data.train_at(window - start)  # the shard schedule's samples at this global step
        pool = miner_pool(self.uid, window, train.n_samples, inner.steps, inner.target_batch)
        rows = self.upload.training_rows(self, window, trained_indices(pool, inner.steps, inner.batch))
        batches = [train.samples(self.trainer.feed.local_rows(r)) for r in rows]  # this process's rows
        params, opt_state, losses = self.trainer.run(params, opt_state, batches, before_step=before_step,
                                                     deadline=self.clock.train_deadline(window), clock=self.clock.now)
        if len(losses) < len(batches):
            log.warning("window %d: trained %d of %d inner steps before the upload deadline", window,
                        len(losses), len(batches))
        return Trained(params, opt_state, losses, sample_digest(train.ids(pool)), len(pool))

    def _prepare(self, state: MinerState, window: int, start: int, landing: Landing | None = None) -> Prepared:
        """Train, compress and encode during `window`. The returned state keeps theta0: the outer
        step moves the params, not the training. With `landing` (overlap), training continues
        from the previous window's end while its exchange is in flight, and theta0 is the global
        model it lands."""
        t0 = time.time()
        # the lr schedule follows the run's global inner step, whatever this miner trained before
        opt_state = at_schedule_step(to_device(state.opt_state), global_inner_step(window, start, self.cfg.inner.steps))
        if landing is None:
            trained = self._train(state.params, opt_state, window, start)
            theta0 = state.params
        else:
            trained = self._train(landing.pending.x_base, opt_state, window, start, before_step=landing)
            trained = trained._replace(params=landing.finish(trained.params))
            theta0 = landing.exchanged.params
        t_trained = time.time()
        opt_state = self.offload.optimizer(trained.opt_state)  # off the device before compression
        delta = jax.tree.map(lambda a, b: a - b, to_device(theta0), trained.params)
        # theta_H's buffers free up once delta exists, unless the next window trains on from them
        x_end = self.offload.theta0(trained.params) if self.cfg.sparseloco.overlap else None
        trained = trained._replace(params=None)
        payload, ef = self.tx.update(delta, to_device(state.ef), null_round=self.is_null_round(window, start))
        del delta
        ef = self.offload.error_feedback(ef)
        meta = {"window": window, "uid": self.uid, "global_step": window - start,
                "sample_digest": trained.sample_digest, "sample_count": trained.sample_count,
                "version": self.version}
        data = self.upload.prepare(self, payload, meta)
        t_done = time.time()
        landed = landing.seconds if landing is not None else 0.0  # the previous window's comm
        self._phase(window, "train", t0, t_trained)
        self._phase(window, "compress", t_trained, t_done)
        done = Contribution(train_loss=float(np.mean(trained.losses)), inner_steps=len(trained.losses),
                            compute_s=t_done - t0 - landed)
        return Prepared(MinerState(theta0, opt_state, ef), data, done, x_end)

    def _upload(self, window: int, start: int, data: bytes, theta0) -> bool:
        """Put `window`'s payload and debug object (the upload window is open); False if lost."""
        t0 = time.time()
        try:
            data = self.upload.finalize(self, window, window - start, data)
            if data is None:
                return False
            self.bucket.put(gradient_key(window, self.uid, self.version), data)
            dbg = debug_object(flatten_params(theta0), self.sample_positions, window)
            self.bucket.put(debug_key(window, self.uid, self.version), json.dumps(dbg).encode())
            return True
        except (StorageError, PayloadError) as err:  # this window's upload is lost; the loop goes on
            log.error("window %d: upload failed (%s)", window, err)
            return False
        finally:
            self._phase(window, "upload", t0, time.time())

    def _contribute(self, state: MinerState, window: int, start: int) -> tuple[MinerState, Contribution]:
        """Train, compress and encode during `window`; upload once `window + 1` begins."""
        prepared = self._prepare(state, window, start)
        self.clock.wait_for_upload(window)
        t_up = time.time()
        uploaded = self._upload(window, start, prepared.data, prepared.state.params)
        done = dataclasses.replace(prepared.done, uploaded=uploaded, upload_s=time.time() - t_up)
        return prepared.state, done

    def _phase(self, window: int, phase: str, t0: float, t1: float) -> None:
        """One phase of a window on the timeline; lane 'comm' is the overlap's comm thread, 'main'
        the thread that trains."""
        lane = "comm" if threading.current_thread().name.startswith(COMM_THREAD) else "main"
        self.events.emit("phase", window=window, phase=phase, start=t0, end=t1, lane=lane)

    def _gather_window(self, window: int) -> Gathered:
        """The payloads every honest neuron aggregates for `window` (peer list + reserves)."""
        graph = self.chain.metagraph()  # one read for the window: validators and leader
        miners, buckets = self.peer_view(graph)
        peers = self.peer_list(window, miners, graph)
        return self.gather(window, peers.gather + peers.reserve, peers, buckets)

    def _outer_step(self, state: MinerState, window: int) -> tuple[dict, Gathered]:
        """Gather `window` and apply its outer step to theta0 = state.params (as every neuron does)."""
        t0 = time.time()
        gathered = self._gather_window(window)
        t1 = time.time()
        params = jax.block_until_ready(
            self.offload.theta0(self.model.outer_step(to_device(state.params), gathered.applied)))
        self._phase(window, "gather", t0, t1)
        self._phase(window, "outer_step", t1, time.time())
        return params, gathered

    def step_window(self, state: MinerState, window: int, start: int) -> MinerState:
        """One whole window: contribute (when on time), gather, apply, report."""
        on_time = self.clock.current_window() == window
        if on_time:
            state, done = self._contribute(state, window, start)
        else:
            done = Contribution()
            log.warning("window %d: behind the chain (now %d); skipping training", window,
                        self.clock.current_window())
        self.clock.wait_for_gather(window)
        t_gather = time.time()
        params, gathered = self._outer_step(state, window)
        state = MinerState(params, state.opt_state, state.ef)
        self._save_resume(state, window, start)
        comm_s = done.upload_s + (time.time() - t_gather)  # clock waits are not counted
        self._report(window, start, done, gathered, self.model.params_digest(params), comm_s=comm_s,
                     status="ok" if on_time else "behind")
        return state

    def _report(self, window: int, start: int, done: Contribution, gathered: Gathered, digest: str | None, *,
                comm_s: float, status: str, **extra) -> None:
        got = gathered.payloads
        self.events.emit("window", window=window, train_loss=done.train_loss, inner_steps=done.inner_steps,
                         uploaded=done.uploaded, compute_s=done.compute_s, comm_s=comm_s,
                         params_digest=digest, behavior=str(self.upload),
                         gathered=gathered.contributors, skipped=got.failed,
                         null_round=self.is_null_round(window, start), status=status, **extra)
        log.info("window %d: loss %s, applied %d peers %s, skipped %s", window,
                 "-" if done.train_loss is None else f"{done.train_loss:.4f}", len(gathered.contributors),
                 gathered.contributors, {u: r.split(":")[0] for u, r in got.failed.items()})

    # -- overlapped outer steps (run config sparseloco.overlap) ---------------------------------
    def _exchange(self, window: int, start: int, prepared: Prepared) -> Exchanged:
        """On the comm thread: upload `window`, gather it, apply its outer step."""
        t0 = time.time()
        uploaded = self._upload(window, start, prepared.data, prepared.state.params)
        t_uploaded = time.time()
        self.clock.wait_for_gather(window)  # a clock wait, not communication
        t_gather = time.time()
        self._phase(window, "gather_wait", t_uploaded, t_gather)
        params, gathered = self._outer_step(prepared.state, window)
        digest = self.model.params_digest(params)
        return Exchanged(params, gathered, uploaded, digest, seconds=t_uploaded - t0 + time.time() - t_gather,
                         clock_wait=(t_uploaded, t_gather))

    def step_overlapped(self, state: MinerState, window: int, start: int,
                        pending: Pending | None) -> tuple[MinerState, Pending | None]:
        """Train `window` while `pending` (the previous window's exchange) is in flight, then hand
        this window's upload, gather and outer step to the comm thread; returns the new pending
        exchange. `state.params` is the last global model landed (theta_{window-1} while `pending`
        runs), the returned state's is theta_window."""
        if self.clock.current_window() != window:  # behind: land, then the plain window
            state = self._land(state, pending, start)
            return self.step_window(state, window, start), None
        landing = Landing(pending) if pending is not None else None
        prepared = self._prepare(state, window, start, landing)
        if landing is not None:
            self._report_landed(landing, start)
        self.clock.wait_for_upload(window)
        t_submit = time.time()
        future = self.comm.submit(self._exchange, window, start, prepared)
        saved = None
        if self._resume_due(window, start):  # on the comm thread after the exchange, not delaying its landing
            # this window's AdamW state: the next inner step donates the one we hold
            opt_copy, ef = fresh_device_copy(prepared.state.opt_state), prepared.state.ef
            saved = self.comm.submit(lambda: self._save_resume(MinerState(future.result().params, opt_copy, ef),
                                                               window, start))
        if landing is not None:
            self._settle(landing.pending)
        done = dataclasses.replace(prepared.done, upload_s=time.time() - t_submit)
        return prepared.state, Pending(window, future, prepared.x_end, done, saved)

    def _land(self, state: MinerState, pending: Pending | None, start: int) -> MinerState:
        """Wait for `pending` (and its resume save) and take its global params (no training in between)."""
        if pending is None:
            return state
        landing = Landing(pending)
        landing.finish(pending.x_base)
        self._report_landed(landing, start)
        self._settle(pending)
        return MinerState(landing.exchanged.params, state.opt_state, state.ef)

    @staticmethod
    def _settle(pending: Pending) -> None:
        """Wait for `pending`'s resume save on the comm thread; raises what it raised (as the
        synchronous loop's save would), and no later save starts on the main thread beside it."""
        if pending.saved is not None:
            pending.saved.result()

    def _report_landed(self, landing: Landing, start: int) -> None:
        got, pending = landing.exchanged, landing.pending
        done = dataclasses.replace(pending.done, uploaded=got.uploaded)
        self._phase(pending.window, "land", *landing.span)
        # exposed communication: submitting the upload, waiting for the aggregate, the rebase
        self._report(pending.window, start, done, got.gathered, got.params_digest,
                     comm_s=done.upload_s + landing.seconds, status="ok", overlap=True,
                     comm_hidden_s=got.seconds, landed_after_steps=landing.after_steps)

    # -- start-up: resume, late join --------------------------------------------------------
    def _resume_dir(self) -> Path:
        return self.run_dir / f"miner-{self.uid}-resume"

    def start_state(self, start: int, window: int) -> MinerState:
        """The state at the start of `window`.

        A local resume checkpoint gives params/opt/EF as of the window it was saved after; the
        leader's checkpoint + published aggregates fill the windows since (late join, restart).
        """
        params0 = self.model.init_params()
        opt_state, ef_state = self.trainer.init(params0), self.tx.init(params0)
        base = None
        if self.resume is not None and self.resume.latest_step() is not None:
            try:
                saved = restore_training_state(self.resume, params_like=params0, opt_state_like=opt_state,
                                               error_feedback_like=ef_state.error, expect_version=self.version)
                base = (saved.params, saved.window)
                opt_state, ef_state = saved.opt_state, SparseLoCoState(saved.error_feedback)
                log.info("resumed from local checkpoint of window %d", saved.window)
            except CheckpointError as err:
                log.warning("local resume checkpoint unusable (%s); joining as a new peer", err)
        if base is None and window <= start:
            return self._parked(MinerState(params0, opt_state, ef_state))
        _, leader = self.leader_bucket()
        rebuilt = rebuild_params(self.model, leader, start=start, upto=window, base=base,
                                 cache_dir=self.run_dir / f"miner-{self.uid}-fetched",
                                 fallback=lambda w: self._gather_window(w).applied)
        self.events.emit("caught_up", window=window, checkpoint_window=rebuilt.checkpoint_window,
                         resumed_from=None if base is None else base[1], applied=len(rebuilt.applied),
                         skipped=len(rebuilt.skipped))
        log.info("caught up to window %d: checkpoint %s, replayed %d windows, %d missing", window,
                 rebuilt.checkpoint_window, len(rebuilt.applied), len(rebuilt.skipped))
        return self._parked(MinerState(rebuilt.params, opt_state, ef_state))

    def _parked(self, state: MinerState) -> MinerState:
        """The state with each offloaded part in host memory (run config `offload`)."""
        return MinerState(self.offload.theta0(state.params), self.offload.optimizer(state.opt_state),
                          self.offload.error_feedback(state.ef))

    def _resume_due(self, window: int, start: int) -> bool:
        return self.resume is not None and (window - start + 1) % self.cfg.run.resume_interval_windows == 0

    def _save_resume(self, state: MinerState, window: int, start: int) -> None:
        if not self._resume_due(window, start):
            return
        save_training_state(self.resume, TrainingState(state.params, state.opt_state, state.ef.error, window,
                                                       window - start + 1), version=self.version)

    # -- the loop -------------------------------------------------------------------------
    def run(self, windows: int | None = None) -> int:
        start = self.wait_start_window()
        window = max(start, self.clock.current_window())
        state = self.start_state(start, window)
        last = start + windows - 1 if windows else None
        self.events.emit("started", behavior=str(self.upload), start_window=start, window=window,
                         overlap=self.cfg.sparseloco.overlap)
        if self.comm is not None:
            pending = None
            try:
                while last is None or window <= last:
                    state, pending = self.step_overlapped(state, window, start, pending)
                    window += 1
                self._land(state, pending, start)
                self.comm.shutdown()  # nothing is queued any more: joins the comm thread
            finally:  # on an error: nothing queued runs any more (an exchange in flight still ends)
                self.comm.shutdown(wait=False, cancel_futures=True)
        else:
            while last is None or window <= last:
                state = self.step_window(state, window, start)
                window += 1
        if self.resume is not None:
            self.resume.wait()  # the last async resume save is on disk before the neuron stops
        self.events.emit("stopped", window=window - 1)
        return 0
