"""Checkpoint uploads on a background thread, one at a time.

The validator saves its checkpoint locally inside the window (orbax; a collective when it spans
processes) and hands the finished step folder to a `CheckpointPublisher`, which uploads it (the
files, the manifest, then the `_LATEST` pointer: `remote.publish_checkpoint`) and prunes the
bucket's older windows on its own thread, so the window does not wait for the bucket.

    publisher = CheckpointPublisher(bucket, version, keep=3)
    publisher.wait()  # before the next local save: its rotation may delete the folder being read
    save_checkpoint(ckpts, version=version, window=w, params=params, global_step=s)
    publisher.submit(w, ckpts.step_dir(w), global_step=s)
    ...
    publisher.close()  # waits for the last upload

`submit` first waits for the previous upload, so uploads run one at a time, in order, and none is
dropped; a failed upload is logged and counted (`failures`) and the next one goes ahead. The
thread never goes through a multi-process Agreement (its calls are numbered per process): on a
neuron spanning processes only process 0 submits, and the upload uses its own plain `Bucket`
(`multihost.local_bucket`: an agreed bucket's operations must stay on the main thread, in order).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from templar_jax.checkpoint.local import CheckpointError
from templar_jax.checkpoint.remote import publish_checkpoint
from templar_jax.multihost.bucket import local_bucket

log = logging.getLogger(__name__)


class PublisherClosed(CheckpointError):
    """A checkpoint was submitted after `close()`."""


class CheckpointPublisher:
    """Uploads finished local checkpoint folders to `bucket` under `version`, keeping the newest
    `keep` windows there (None: all), on one background thread."""

    def __init__(self, bucket, version: str, *, keep: Optional[int] = None):
        self.bucket, self.version, self.keep = bucket, version, keep
        self.failures = 0  # uploads that raised (each logged)
        self.last_pointer: Optional[dict[str, Any]] = None  # of the newest successful upload
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-upload")
        self._current: Optional[Future] = None
        self._closed = False

    def submit(self, window: int, step_dir: str | Path, *, global_step: int) -> Future:
        """Upload the finished local folder of `window` in the background (after the previous
        upload ended); the future's result is the pointer written, or None when it failed."""
        if self._closed:
            raise PublisherClosed(f"checkpoint window {window} submitted after close()")
        self.wait()
        self._current = self._pool.submit(self._upload, local_bucket(self.bucket), int(window), Path(step_dir),
                                          int(global_step))
        return self._current

    def wait(self) -> Optional[dict[str, Any]]:
        """Wait for the upload in flight; its pointer (None: none was submitted, or it failed)."""
        return None if self._current is None else self._current.result()

    @property
    def busy(self) -> bool:
        return self._current is not None and not self._current.done()

    def close(self) -> None:
        """Wait for the last upload and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "CheckpointPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _upload(self, bucket, window: int, step_dir: Path, global_step: int) -> Optional[dict[str, Any]]:
        t = time.monotonic()
        try:
            pointer = publish_checkpoint(bucket, self.version, window, step_dir,
                                         info={"global_step": global_step}, keep=self.keep)
        except Exception as err:  # storage trouble: logged; the run and the next upload go on
            self.failures += 1
            log.error("checkpoint window %d: upload failed after %.1f s (%s: %s)", window, time.monotonic() - t,
                      type(err).__name__, err)
            return None
        self.last_pointer = pointer
        log.info("checkpoint window %d: uploaded in the background in %.1f s", window, time.monotonic() - t)
        return pointer
