"""`templar-jax eval --watch`: follow the leader's published checkpoints, evaluate each once.

Each poll asks `leader()` for the leader's bucket (a fixed URL's bucket, or the leader the chain
names at that moment), lists the windows under `checkpoints/{version}/` in the leader's bucket
(`checkpoint.remote`), skips those already in the history and those still being published (no
`_MANIFEST.json` yet: it is written after every file), and, oldest first, downloads one
(size + sha256 of every file checked), evaluates it, appends the result to the JSONL history
(`history.EvalHistory`, which is also the restart state) and deletes the local copy.

A storage error (or a chain error looking up the leader, or the evaluation data failing to
download: a `DataError`) ends the poll without a record (the next poll tries again); a checkpoint that
fails verification or does not fit the model gets an error record and is not tried again.
`on_record(record)` is called for every record written (the metrics exporter hooks in there).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from templar_jax.chain.errors import ChainError
from templar_jax.checkpoint.remote import MANIFEST, RemoteCheckpointError, fetch_checkpoint, remote_windows
from templar_jax.data.errors import DataError
from templar_jax.evaluate.errors import EvalError
from templar_jax.evaluate.history import EvalHistory
from templar_jax.storage.errors import StorageError
from templar_jax.storage.keys import checkpoint_prefix

log = logging.getLogger(__name__)

# Evaluates the checkpoint restored from `root/{window}` -> the record's result fields.
Evaluate = Callable[[Path, int], dict[str, Any]]


class CheckpointWatcher:
    """Evaluates every complete checkpoint of `version` in the leader's bucket that `history`
    lacks; `leader()` returns that bucket (None: no leader known now) at each poll."""

    def __init__(self, leader: Callable[[], Any], version: str, history: EvalHistory, evaluate: Evaluate,
                 work_dir: str | Path, *, on_record: Callable[[dict], None] | None = None):
        self.leader, self.version, self.history = leader, version, history
        self.evaluate, self.on_record = evaluate, on_record
        self.work_dir = Path(work_dir)

    def pending(self, bucket) -> list[int]:
        """Published windows in `bucket`, oldest first, that are complete and not in the history."""
        done = self.history.windows
        return [w for w in remote_windows(bucket, self.version)
                if w not in done and bucket.head(checkpoint_prefix(self.version, w) + MANIFEST) is not None]

    def poll(self) -> list[dict]:
        """One pass: evaluate every pending checkpoint; the records written."""
        written = []
        try:
            bucket = self.leader()
        except (ChainError, StorageError) as err:  # the chain (or a commitment's bucket) is down
            log.warning("looking up the leader's bucket failed (%s); trying again next poll", err)
            return written
        if bucket is None:
            log.warning("no leader bucket known now; trying again next poll")
            return written
        try:
            windows = self.pending(bucket)
        except StorageError as err:
            log.warning("listing checkpoints failed (%s); trying again next poll", err)
            return written
        for window in windows:
            record = self._one(bucket, window)
            if record is None:
                break  # storage trouble: the rest waits for the next poll
            self.history.append(record)
            written.append(record)
            if self.on_record is not None:
                self.on_record(record)
        return written

    def _one(self, bucket, window: int) -> dict | None:
        t0 = time.time()
        base = {"window": window, "version": self.version}
        try:
            _, step_dir = fetch_checkpoint(bucket, self.version, self.work_dir, window=window)
        except StorageError as err:
            log.warning("window %d: download failed (%s); trying again next poll", window, err)
            return None
        except RemoteCheckpointError as err:
            log.error("window %d: checkpoint rejected: %s", window, err)
            return {**base, "error": f"checkpoint rejected: {err}"}
        try:
            result = self.evaluate(self.work_dir, window)
        except DataError as err:  # the evaluation data (e.g. held-out shards in a bucket), not the checkpoint
            log.warning("window %d: evaluation data unavailable (%s); trying again next poll", window, err)
            return None
        except EvalError as err:
            log.error("window %d: evaluation failed: %s", window, err)
            return {**base, "error": f"evaluation failed: {err}"}
        finally:
            shutil.rmtree(step_dir, ignore_errors=True)  # the history keeps what matters
        log.info("window %d evaluated in %.1f s: %s", window, time.time() - t0,
                 {k: v for k, v in (result.get("heldout") or {}).items() if k in ("loss", "bits_per_byte")})
        return {**base, **result, "evaluated_at": time.time(), "seconds": round(time.time() - t0, 3)}

    def run(self, *, poll_s: float, max_polls: int | None = None, stop: Callable[[], bool] = lambda: False) -> int:
        """Poll every `poll_s` seconds until `stop()` or `max_polls` passes; records written."""
        total, polls = 0, 0
        while not stop():
            total += len(self.poll())
            polls += 1
            if max_polls is not None and polls >= max_polls:
                break
            time.sleep(poll_s)
        return total


def checkpoint_evaluator(model_cfg, data, *, batch_size: int = 8, max_batches: int | None = None,
                         tasks: list[str] | None = None, lm_eval_limit: int | None = None, mesh=None) -> Evaluate:
    """Held-out loss / perplexity / bits per byte on `data` (an `EvalData`), plus lm-eval `tasks`
    when given (the caller checks lm-eval is installed first), for checkpoints of `model_cfg`,
    restored sharded over `mesh` when given (the run config's `mesh`). The loss program is
    compiled once for every checkpoint."""
    import tempfile

    from templar_jax.evaluate.heldout import evaluate_shards, make_loss_sums
    from templar_jax.evaluate.load import load_checkpoint
    from templar_jax.evaluate.lm_eval_tasks import run_lm_eval, write_hf_model

    loss_sums = make_loss_sums(model_cfg, data.pad_id)

    def evaluate(root: Path, window: int) -> dict[str, Any]:
        loaded = load_checkpoint(root, step=window, model=model_cfg, mesh=mesh)
        heldout = evaluate_shards(loaded.params, model_cfg, data, batch_size=batch_size,
                                  max_batches=max_batches, loss_sums=loss_sums)
        out: dict[str, Any] = {"global_step": loaded.meta.global_step, "heldout": heldout.to_json()}
        if tasks:
            with tempfile.TemporaryDirectory(prefix="templar-jax-lm-eval-") as tmp:
                hf_dir = write_hf_model(loaded.params, model_cfg, tmp, tokenizer_path=data.tokenizer_path,
                                        eos_id=data.pad_id)
                out["lm_eval"] = run_lm_eval(hf_dir, tasks, batch_size=batch_size, limit=lm_eval_limit)
        return out

    return evaluate
