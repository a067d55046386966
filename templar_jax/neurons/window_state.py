"""What travels between the steps of one window, named: the miner's state carried from window
to window, what it did before the gather, what was gathered, and the validator's verdicts."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

from templar_jax.gauntlet import CopyVerdict, ValidatorState, WeightVector
from templar_jax.neurons.exchange import WindowPayloads
from templar_jax.protocol.leader import PeerList
from templar_jax.sparseloco import Payload, SparseLoCoState


class MinerState(NamedTuple):
    """A miner's state at the start of a window."""

    params: Any  # theta0, the global model every honest neuron holds
    opt_state: Any  # inner AdamW state, kept across windows
    ef: SparseLoCoState  # error feedback


@dataclass(frozen=True)
class Contribution:
    """What a miner did in its window before the gather (all zeros when it was behind)."""

    train_loss: float | None = None
    inner_steps: int = 0
    uploaded: bool = False
    compute_s: float = 0.0  # train + compress + encode
    upload_s: float = 0.0


class Prepared(NamedTuple):
    """A window's work before its upload: the state for the outer step, the bytes to upload."""

    state: MinerState  # theta0 of the window, the inner AdamW state after it, the new EF
    data: bytes  # the encoded payload
    done: Contribution  # upload_s not yet known
    x_end: Any  # overlap only: the working params the next window trains on from (else None)


@dataclass(frozen=True)
class Gathered:
    """One window's gather: the peer list in force, the payloads, and who counts."""

    peers: PeerList
    payloads: WindowPayloads
    contributors: list[int]  # the uids whose payloads the outer step aggregates
    seconds: float

    @property
    def applied(self) -> list[Payload]:
        return [self.payloads.valid[u] for u in self.contributors]


@dataclass(frozen=True)
class Scoring:
    """The validator's verdicts for one window (empty in a null round)."""

    state: ValidatorState
    eval_uids: list[int]  # evaluated (drawn and not skipped)
    verdicts: list[CopyVerdict]
    skipped: Mapping[int, str] = field(default_factory=dict)  # drawn uids left out, and why (time budget)
    seed: int | None = None  # the window's evaluation seed (None in a null round)


@dataclass(frozen=True)
class ValidatorWindow:
    """Everything the validator reports for one window."""

    window: int
    miners: list[int]
    gathered: Gathered
    scoring: Scoring
    weights: WeightVector | None  # set on chain this window, if due
    heldout_loss: float | None
    params_digest: str | None


@dataclass(frozen=True)
class Exchanged:
    """One window's upload, gather and outer step, run beside the next window's inner steps
    (run config `sparseloco.overlap`)."""

    params: Any  # theta_{W+1}, the global model every honest neuron holds
    gathered: Gathered
    uploaded: bool
    params_digest: str | None
    seconds: float  # upload + gather + outer step, on the comm thread (clock waits excluded)
    clock_wait: tuple[float, float]  # (start, end) of its wait for the gather time (no communication)


class Pending(NamedTuple):
    """A window whose exchange is in flight while the next window trains."""

    window: int
    future: Future  # -> Exchanged
    x_base: Any  # the working params the next window's training started from (x_end of `window`)
    done: Contribution  # what the window's own training did
    saved: Future | None = None  # its resume checkpoint's save, queued on the comm thread after the exchange
