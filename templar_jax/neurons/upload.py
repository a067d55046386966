"""What a miner puts in its bucket each window, as a part handed to the miner.

The miner asks `training_rows` which samples to train on (honest: its assigned rows), calls
`prepare` during the window (its time counts as compute) and `finalize` once the upload opens;
the bytes `finalize` returns are uploaded (None: nothing this window). The honest `Upload`
trains on its assigned data, encodes the miner's own compressed pseudo-gradient and uploads it
unchanged. The demo's adversaries (`templar_jax.demo.behaviors`) are other uploads handed to the
same honest miner.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from templar_jax.config import RunConfig
from templar_jax.neurons.clock import WindowClock
from templar_jax.neurons.datasets import DataSets
from templar_jax.neurons.network import PeerDirectory
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.sparseloco import Payload
from templar_jax.storage.bucket import Bucket


class MinerView(Protocol):
    """What an upload may read of the miner it is handed to."""

    uid: int
    cfg: RunConfig
    data: DataSets
    model: GlobalModel  # .codec (the wire format), .version, the parameter table
    peers: PeerDirectory
    clock: WindowClock

    def leader_bucket(self) -> tuple[int, Bucket | None]:
        """(the leader validator's uid, its bucket)."""


class Upload:
    """The honest upload: the miner's own payload, encoded with the run's wire format."""

    name = "honest"

    def training_rows(self, miner: MinerView, window: int, rows: np.ndarray) -> np.ndarray:
        """int64 [inner_steps, batch] sample indices to train on; `rows` is the assigned data."""
        return rows

    def prepare(self, miner: MinerView, payload: Payload, meta: dict) -> bytes:
        return miner.model.codec.encode(payload, meta)

    def finalize(self, miner: MinerView, window: int, global_step: int, data: bytes) -> bytes | None:
        return data

    def __str__(self) -> str:
        return self.name
