"""The validator's window loop (SPEC sec. 1, 3, 5).

Per window W, once the upload window closed: gather every miner's payload; score up to
`eval_uids` of them with Gauntlet (LossScore before/after applying that miner's clipped update
alone, on its own data and on random data; sync from its debug object); copy detection,
slashing, inactivity; apply the same outer step as the miners (the leader publishes the payloads
it aggregated as `aggregator-W` for catch-up); publish the peer list every `refresh_windows`
(effective two windows later, after every miner has finished with the current list); set
weights every `weights_interval_windows`; publish an orbax checkpoint every
`checkpoint_interval_windows`. The scoring state is saved atomically each window and the params
are rebuilt on restart from the latest published checkpoint plus the published aggregates, so a
restart resumes where it stopped.

Across several processes (jax.distributed, `templar_jax.multihost`) process 0 alone reads and
writes the run folder's state and secret and publishes; every input of the model (state, draw,
gathered payloads, the evaluation budget's skips) is decided there and agreed, and the arrays
are evaluated alike everywhere (`validator_files` says which file is whose).

Which uids are evaluated and on which sequences comes from the window's evaluation seed
(gauntlet/eval_seed.py): the hash of the first block after the upload deadline mixed with a
secret kept in the run folder, so no miner can know it while it can still upload; each draw is
recorded in the state and the `scores` event. A uid whose hotkey changed starts over.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
import time

import jax
import numpy as np

from templar_jax.data import validator_own_indices, validator_random_indices
from templar_jax.gauntlet import (
    Evaluation,
    apply_copy_verdicts,
    apply_inactivity,
    EvalDraw,
    compute_weights,
    detect_copies,
    detect_stale_copies,
    draw,
    remember,
    observe_hotkeys,
    observe_validator_sample,
    parse_debug_object,
    sample_params,
    score_window,
    select_eval_uids,
    select_gather_peers,
    slash_invalid,
    slash_poor_sync,
    steps_behind,
)
from templar_jax.checkpoint import LocalCheckpoints, save_checkpoint
from templar_jax.checkpoint.publisher import CheckpointPublisher
from templar_jax.gauntlet.copy_detect import detect_copies_sketched, index_sketch
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.model.params import flatten_params
from templar_jax.neurons.catchup import rebuild_params
from templar_jax.neurons.common import NeuronBase, NeuronParts
from templar_jax.neurons.exchange import WindowPayloads
from templar_jax.neurons.spool import PayloadSpool, SpooledPayload
from templar_jax.neurons.validator_files import agreed_secret, agreed_state, save_state_once
from templar_jax.neurons.window_state import Gathered, Scoring, ValidatorWindow
from templar_jax.protocol.aggregator_object import write_aggregator
from templar_jax.protocol.leader import PeerList, publish_peer_list, publish_start_window, read_start_window
from templar_jax.sparseloco import median_norms, topk_rows_of
from templar_jax.sparseloco.tree import flatten
from templar_jax.storage.keys import aggregator_key, debug_key

log = logging.getLogger(__name__)

EVAL_STEP_FRACTION = 0.2  # SPEC 5: a single miner's update is applied with step alpha * 0.2
START_DELAY_WINDOWS = 2  # a fresh run starts this many windows after the validator comes up
CHECKPOINTS_KEPT = 3  # published checkpoints kept in the bucket


class Validator(NeuronBase):
    role = "validator"

    def __init__(self, parts: NeuronParts, *, validator_seed: int = 0):
        super().__init__(parts)
        self.state_path = self.run_dir / f"validator-{self.uid}-state.json"
        self.ckpts = LocalCheckpoints(self.run_dir / f"validator-{self.uid}-checkpoints", max_to_keep=2)
        # uploads each saved checkpoint on its own thread (process 0 alone submits)
        self.publisher = CheckpointPublisher(self.bucket, self.version, keep=CHECKPOINTS_KEPT)
        # every miner's accepted payload waits here, not in memory (peak RSS flat in the miners);
        # each process has its own
        self.spool = PayloadSpool(self.process_dir / f"validator-{self.uid}-spool", self.model.codec)
        self.state = agreed_state(self.agreement, self.state_path)
        self.validator_seed = validator_seed
        self.eval_secret = agreed_secret(self.agreement, self.run_dir / f"validator-{self.uid}-eval-secret")
        self.earlier_updates = ()  # the last scored windows' updates, sampled (stale-copy check)

    # -- start window -------------------------------------------------------------------------
    def ensure_start_window(self) -> int:
        start = read_start_window(self.bucket, self.version)
        if start is None:
            start = self.clock.current_window() + START_DELAY_WINDOWS
            publish_start_window(self.bucket, start, self.version)
            log.info("published start window %d", start)
        return start

    # -- evaluation ------------------------------------------------------------------------------
    @staticmethod
    def _tokens(train, idx) -> np.ndarray:
        return train.samples(np.asarray(idx))

    def eval_draw(self, window: int) -> EvalDraw:
        """The window's evaluation seed, from a block stamped at or after the close of its upload
        window (the current block once that has passed; otherwise waits for the first such block)."""
        close = self.clock.phases(window).upload_close
        block = self.chain.current_block()
        while True:
            while self.chain.block_timestamp(block) < close:
                block += 1
            self.chain.wait_for_block(block)
            if self.chain.block_timestamp(block) >= close:  # the produced block's own time
                return draw(self.eval_secret, window, block, self.chain.block_hash(block), self.validator_seed)

    def _evaluate(self, theta0, window: int, uids, gathered: Gathered, rand_tokens, loss_rand_before,
                  val_sample, seed: int, train) -> tuple[list[Evaluation], list[int], list[int], dict[int, float],
                                                         dict[int, str]]:
        """Evaluations of the drawn `uids` in draw order, within `validator.eval_budget_s`: a uid
        whose evaluation would not fit in what is left (judged by the slowest one so far; the
        first always runs) is skipped, with the reason (missing and invalid uids need no
        evaluation and never are). Process 0's clock decides each skip for every process."""
        s = self.cfg
        got, contributors = gathered.payloads, gathered.contributors
        evaluations, missing, invalid, behind, skipped = [], [], [], {}, {}
        pool_for_norms = [got.valid[u] for u in (contributors or sorted(got.valid))]
        clip = median_norms(pool_for_norms) if pool_for_norms else None
        step = s.sparseloco.outer_lr * EVAL_STEP_FRACTION
        budget, started, slowest = s.validator.eval_budget_s, time.monotonic(), 0.0
        for uid in uids:
            if uid in got.invalid:
                invalid.append(uid)
                continue
            if uid not in got.valid:
                missing.append(uid)
                continue
            if budget > 0 and evaluations:
                def over_budget(spent: float) -> str | None:
                    if spent + slowest <= budget:
                        return None
                    return (f"evaluation time budget: {spent:.1f} s of {budget:g} s spent, "
                            f"one evaluation takes up to {slowest:.1f} s")

                reason = self.agreement.value(f"evaluation budget uid {uid}",
                                              lambda: over_budget(time.monotonic() - started))
                if reason is not None:
                    skipped[uid] = reason
                    continue
            # the debug object is read from the peer's bucket: its latency is the peer's to set, so
            # it counts in `spent` but not in `slowest` (one slow bucket must not skip the others)
            x = self._steps_behind(uid, window, val_sample)
            if x is not None:
                behind[uid] = x
            t_uid = time.monotonic()
            # theta0 - step * update, one parameter at a time (the dense update never exists whole)
            theta_u = self.model.with_update(theta0, got.valid[uid], clip_norm=clip, step=step)
            own = self._tokens(train, validator_own_indices(
                uid, window, train.n_samples, s.inner.steps, s.inner.target_batch,
                s.inner.batch, validator_seed=seed, n=s.validator.eval_sequences))
            evaluations.append(Evaluation(
                uid=uid,
                loss_own_before=self.model.loss(theta0, own),
                loss_own_after=self.model.loss(theta_u, own),
                loss_rand_before=loss_rand_before,
                loss_rand_after=self.model.loss(theta_u, rand_tokens),
                steps_behind=x))
            del theta_u  # model-sized: gone before the next uid's is built
            slowest = max(slowest, time.monotonic() - t_uid)
        if skipped:
            log.info("window %d: evaluation budget %.1f s: evaluated %d, skipped %s", window, budget,
                     len(evaluations), sorted(skipped))
        return evaluations, missing, invalid, behind, skipped

    def _steps_behind(self, uid: int, window: int, val_sample) -> float | None:
        ema = self.state.sync_change_ema
        if ema is None:
            return None
        bucket = self.peers.bucket(uid)
        try:
            raw = bucket.get(debug_key(window, uid, self.version), max_bytes=1 << 20)
            miner_sample = parse_debug_object(json.loads(raw), self.sample_positions)
        except ScoreInputError as err:
            log.info("uid %d: bad debug object (%s)", uid, err)
            return float(self.gauntlet_cfg.sync_max_steps)
        except Exception:
            return None  # no debug object: keep its last sync score
        return steps_behind(val_sample, miner_sample, np.asarray(ema), self.gauntlet_cfg)

    def _score(self, theta0, window: int, miners: list[int], gathered: Gathered, train) -> Scoring:
        """Gauntlet for one window: evaluations, copy detection, slashing, inactivity."""
        s, cfg = self.cfg, self.gauntlet_cfg
        got, contributors = gathered.payloads, gathered.contributors
        val_sample = sample_params(flatten_params(theta0), self.sample_positions)
        seed = self.eval_draw(window)
        eval_uids = select_eval_uids(self.state, miners, window, cfg, seed=seed.seed)
        rand_tokens = self._tokens(train, validator_random_indices(
            window, train.n_samples, validator_seed=seed.seed, n=s.validator.eval_sequences))
        loss_rand_before = self.model.loss(theta0, rand_tokens)
        evaluations, missing, invalid, behind, skipped = self._evaluate(
            theta0, window, eval_uids, gathered, rand_tokens, loss_rand_before, val_sample, seed.seed, train)
        eval_uids = [u for u in eval_uids if u not in skipped]  # as if not drawn: stale for the next draw
        state = score_window(self.state.with_draw(seed), window, evaluations, cfg, missing=missing, invalid=invalid)
        uploads = {u: got.valid[u] for u in got.valid}
        verdicts = self._copies(uploads, got.stored_at, seed.seed)
        state = apply_copy_verdicts(state, verdicts, window, cfg)
        stale = detect_stale_copies(uploads, self.earlier_updates, cfg)  # replays, re-uploaded aggregates
        state = apply_copy_verdicts(state, stale, window, cfg)
        for uid in contributors:
            if uid in behind and behind[uid] > cfg.poor_sync_steps:
                state = slash_poor_sync(state, uid, behind[uid], cfg)
        state = apply_inactivity(state, got.valid.keys(), cfg, skip=eval_uids)
        for uid in sorted(got.invalid - set(eval_uids)):
            state = slash_invalid(state, uid, cfg)
        state = observe_validator_sample(state, val_sample, cfg)
        return Scoring(state, eval_uids, verdicts + stale, skipped, seed=seed.seed)

    def _remember(self, window: int, gathered: Gathered, seed: int, aggregate: dict | None) -> None:
        """Keep this window's valid uploads and the applied aggregate's top-k indices (what a free
        rider compressing it would send later) at sampled chunk rows, for the stale-copy check."""
        slc = self.cfg.sparseloco
        rows_of = None if aggregate is None else (
            lambda rows: topk_rows_of(flatten(aggregate), rows, topk=slc.topk, chunk=slc.chunk,
                                      batch_dims=self.model.batch_dims))
        self.earlier_updates = remember(self.earlier_updates, window, dict(gathered.payloads.valid),
                                        self.gauntlet_cfg, seed=seed, aggregate_rows=rows_of)

    def _copies(self, uploads: dict, stored_at: dict, seed: int) -> list:
        """Copy verdicts among this window's uploads: from one sketch per miner when
        `validator.copy_sketch_chunks` is set, else from every pair's full index sets."""
        chunks, cfg = self.cfg.validator.copy_sketch_chunks, self.gauntlet_cfg
        if chunks <= 0:
            return detect_copies(uploads, stored_at, cfg)
        return detect_copies_sketched({u: index_sketch(p, chunks, seed) for u, p in uploads.items()}, stored_at, cfg)

    # -- one window ------------------------------------------------------------------------------
    def process_window(self, theta0, window: int, start: int):
        """Gather every miner, score, apply the outer step, publish and report; the new params."""
        self.spool.clear()  # a previous run's leftovers
        try:
            return self._window(theta0, window, start)
        finally:
            self.spool.clear()  # the window's payloads, however it ended

    def _window(self, theta0, window: int, start: int):
        graph = self.chain.metagraph()  # one read for the window: validators, hotkeys and leader
        miners, buckets = self.peer_view(graph)
        self.state, recycled = observe_hotkeys(self.state, dict(zip(graph.uids, graph.hotkeys)))
        if recycled:
            log.info("window %d: uids %s have a new hotkey; their records start over", window, recycled)
        peers = self.peer_list(window, miners, graph)
        gathered = self._timed(window, "validator_gather", lambda: self.gather(
            window, miners, peers, buckets, keep_raw=True, spool=self.spool))
        if self.is_null_round(window, start):
            # Null rounds carry zeros (identical indices for everyone): nothing to score.
            scoring = Scoring(self.state, [], [])
        else:
            # the samples the miners trained on at this global step (the shard schedule's)
            train = self.data.train_at(window - start)
            scoring = self._timed(window, "validator_score",
                                  lambda: self._score(theta0, window, miners, gathered, train))
        state = dataclasses.replace(scoring.state, window=max(scoring.state.window, window))  # resume point
        scoring = dataclasses.replace(scoring, state=state)

        # the same outer step as the miners; then publish (a failed publication is logged and
        # never stops scoring)
        # one aggregate for the outer step and the stale-copy memory, built one peer at a time
        # (the spooled payloads are read one by one: memory flat in the number of peers)
        def outer_step():
            agg = self.model.aggregate_streamed(gathered.applied, theta0) if gathered.applied else None
            return agg, (theta0 if agg is None else self.model.apply(theta0, agg))

        aggregate, params = self._timed(window, "validator_outer_step", outer_step)
        if scoring.seed is not None:
            self._remember(window, gathered, scoring.seed, aggregate)
        del aggregate
        weights = self._timed(window, "validator_publish",
                              lambda: self._publish(params, window, start, state, miners, gathered))
        self.state = state
        save_state_once(self.agreement, state, self.state_path)
        self._timed(window, "validator_report", lambda: self._report(ValidatorWindow(
            window, miners, gathered, scoring, weights, self._heldout_loss(params), self.model.params_digest(params))))
        return params

    def _timed(self, window: int, phase: str, run):
        """run(), written to the event log as one 'phase' of the window (start, end; lane main;
        named validator_* apart from the miners' phases of the same work)."""
        t0 = time.time()
        self.agreement.phase = f"{phase} window {window}"  # until its next decision names itself
        try:
            # waited for: jax dispatches asynchronously, and the phase's work would otherwise be
            # timed in whichever later phase first reads its arrays
            return jax.block_until_ready(run())
        finally:
            self.events.emit("phase", window=window, phase=phase, start=t0, end=time.time(), lane="main")

    def _publish(self, params, window: int, start: int, state, miners, gathered: Gathered):
        """aggregator-W, the peer list, a checkpoint and the weights, each when due."""
        s, cfg = self.cfg, self.gauntlet_cfg
        step = window - start + 1
        weights = None
        try:
            self.agreement.leader_only(f"publish aggregator {window}",  # written there only
                                       lambda: self._publish_aggregator(window, gathered))
            if (window - start) % s.peers.refresh_windows == 0:
                chosen = select_gather_peers(state, miners, window, cfg, gather=s.peers.gather,
                                             reserve=s.peers.reserve)
                publish_peer_list(self.bucket, PeerList(window + 2, chosen.gather, chosen.reserve), self.version)
            if s.validator.checkpoint_interval_windows > 0 and step % s.validator.checkpoint_interval_windows == 0:
                t = time.time()
                self.publisher.wait()  # the previous upload reads a folder this save's rotation may delete
                step_dir = save_checkpoint(self.ckpts, version=self.version, window=window, params=params,
                                           global_step=step)  # every process: a collective
                if self.agreement.leader:
                    self.publisher.submit(window, step_dir, global_step=step)
                log.info("window %d: checkpoint saved in %.1f s, uploading in the background", window, time.time() - t)
            if step % s.validator.weights_interval_windows == 0:
                weights = compute_weights(state, window, cfg)
                if weights.uids and sum(weights.weights) > 0:
                    self.chain.set_weights(weights.uids, weights.weights)
        except Exception as err:  # storage, checkpoint or chain trouble: keep validating
            log.error("window %d: publishing failed (%s: %s)", window, type(err).__name__, err)
        return weights

    def _publish_aggregator(self, window: int, gathered: Gathered) -> None:
        """aggregator-W, written part by part from the spooled payload files (payloads held in
        memory are written as they are) into a file that the bucket uploads in parts, so the
        window's payloads are never all in memory."""
        got = gathered.payloads
        sources = {u: got.valid[u].path if isinstance(got.valid[u], SpooledPayload) else got.raw[u]
                   for u in gathered.contributors}
        self.spool.root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.spool.root) as f:  # gone when closed, however this ends
            write_aggregator(f, window, sources)
            f.flush()
            self.bucket.put_file(aggregator_key(window, self.version), f.name)

    def _heldout_loss(self, params) -> float | None:
        ds = self.data.heldout
        if ds is None:
            return None
        n = min(ds.n_samples, 32)
        return self.model.loss(params, ds.samples(np.arange(n)))

    def _report(self, w: ValidatorWindow) -> None:
        cfg, state, window = self.gauntlet_cfg, w.scoring.state, w.window
        got: WindowPayloads = w.gathered.payloads
        contributors, eval_uids = w.gathered.contributors, w.scoring.eval_uids
        current = compute_weights(state, window, cfg)
        wmap = dict(zip(current.uids, current.weights))
        copied = {v.uid: v.action for v in w.scoring.verdicts}
        uids = {}
        for uid in sorted(set(w.miners) | set(got.failed) | set(got.valid)):
            rec = state.peer(uid, cfg)
            status = "ok" if uid in got.valid else got.failed.get(uid, "missing").split(":")[0]
            if uid in copied:
                status = f"copy:{copied[uid]}"
            if rec.is_banned(window):
                status = "banned"
            uids[str(uid)] = {"loss_score": rec.loss_score, "final": rec.final_score, "bma": rec.bma,
                              "sync": rec.sync, "weight": wmap.get(uid, 0.0), "status": status,
                              "evaluated": uid in eval_uids, "gathered": uid in contributors}
        drawn = next((d for d in state.eval_draws if d.window == window), None)
        self.events.emit("scores", window=window, heldout_loss=w.heldout_loss, uids=uids,
                         eval_draw=None if drawn is None else {**drawn._asdict(), "seed": str(drawn.seed)},
                         gather_s=w.gathered.seconds, weights_set=w.weights is not None, aggregated=contributors,
                         params_digest=w.params_digest, eval_skipped={str(u): r for u, r in w.scoring.skipped.items()})
        log.info("window %d: held-out loss %s, aggregated %s, evaluated %s", window,
                 "-" if w.heldout_loss is None else f"{w.heldout_loss:.4f}", contributors, eval_uids)

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, windows: int | None = None) -> int:
        start = self.ensure_start_window()
        first = max(start, self.state.window + 1) if self.state.window >= start else start
        params = self._restore_params(start, first)
        last = start + windows - 1 if windows else None
        window = first
        self.events.emit("started", start_window=start, window=window)
        while last is None or window <= last:
            self.agreement.phase = f"wait for gather window {window}"  # what a heartbeat reports
            self.clock.wait_for_gather(window)
            params = self.process_window(params, window, start)
            window += 1
        self.publisher.close()  # the last checkpoint upload ends before the run does
        self.events.emit("stopped", window=window - 1)
        return 0

    def _restore_params(self, start: int, first: int):
        """After a restart: my latest published checkpoint, then my published aggregates."""
        rebuilt = rebuild_params(self.model, self.bucket, start=start, upto=first,
                                 cache_dir=self.run_dir / f"validator-{self.uid}-fetched")
        if first > start:
            log.info("resumed at window %d (checkpoint %s, replayed %d, missing %d)", first,
                     rebuilt.checkpoint_window, len(rebuilt.applied), len(rebuilt.skipped))
        return rebuilt.params
