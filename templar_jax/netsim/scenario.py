"""What one simulation runs: the network (peers, links, object store, churn, stragglers), the
protocol's timing rules and the work per window (payload bytes, params, tokens per inner step).

Assumptions the engine makes (stated once, printed by `templar-jax simulate`):
- The window clock is the chain's: window W starts at W * window_s; training of W stops at the
  train deadline, uploads open when W+1 starts and count only if their storage timestamp falls
  in the upload window; gathering starts at the gather time (SPEC sec. 1, neurons/clock.py).
- A peer's transfers share its link fairly; a bucket's egress is shared fairly by everyone who
  reads it at the same time (all peers gather the same gather peers at once); a payload moves
  in parts of `part_size` bytes, `parallel_parts` at a time, each part paying one request
  latency. Rates are fluid (no TCP slow start, no loss).
- Overlap "none": the next window's inner steps wait for gather + aggregate + apply (the
  neurons without run config sparseloco.overlap). "full" (the neurons with it, docs/overlap.md):
  they start right after encode (at the next window's start at the earliest); a comm lane
  uploads, gathers, decodes, aggregates and steps meanwhile, and the new global params land
  between inner steps once ready (after k steps), or at the end of the window's steps at the
  latest, where training waits for them; the training thread pays the wait and the rebase
  (`rebase_s_per_param`), counted as communication; the comm lane's work is assumed not to
  slow training (a GPU peer decodes on host cores). "after_upload" (a variant): training starts
  when the upload ends and decode + aggregate + apply interrupt it.
- Processes on one shared host split its measured throughput (`host_tokens_per_s`, the train
  bench run as several processes at once): each runs max(1, n * single / host) times slower
  than one alone (the demo runs 7 processes on 2 cores): training with `processes_per_host`
  busy, the exchange (gather, decode, aggregate, apply + save) with `exchange_processes_per_host`.
  The calibration is taken under the machine's load at that time; run it just before the run
  it should predict.
- The aggregation is compiled per padded peer count (sparseloco's peer_bucket: the next power of
  two): the first window a peer applies a count whose bucket it has not used yet pays
  `aggregate_first_use_s` (trace + load from the persistent XLA cache) on top of its aggregate.
- Every gather peer that uploaded in time is applied, unless the scenario gives the counts a
  recorded run applied (`applied`: its validator's scores dropped copiers and noise, which the
  simulator does not model).
"""

from __future__ import annotations

import dataclasses
import enum
import math

from templar_jax.protocol.timing import GATHER_MARGIN_S, TRAIN_MARGIN_S
from templar_jax.storage.transfer import TransferConfig

_TRANSFER = TransferConfig()  # the Bucket's defaults: 64 MiB parts, 8 in flight (the reference's shape)


class ScenarioError(ValueError):
    """A scenario setting out of range; the message names it."""


class Overlap(str, enum.Enum):
    """When the next window's training starts relative to this window's exchange (see Assumptions)."""
    NONE = "none"
    AFTER_UPLOAD = "after_upload"
    FULL = "full"


class StampRule(str, enum.Enum):
    """Which instant the object store stamps on an upload (R2/S3 multipart: the initiation)."""
    COMPLETION = "completion"
    INITIATION = "initiation"


@dataclasses.dataclass(frozen=True)
class Links:
    """Per-peer link, drawn per peer: median rates with a lognormal spread (sigma, log scale)."""
    up_bps: float
    down_bps: float
    latency_s: float = 0.05
    spread: float = 0.0  # lognormal sigma of each peer's rates around the median


@dataclasses.dataclass(frozen=True)
class Store:
    """Object store: per-bucket egress, request latency, and how the transport splits objects."""
    egress_bps: float = 10e9
    part_size: int = _TRANSFER.part_bytes
    parallel_parts: int = _TRANSFER.part_concurrency
    stamp: StampRule = StampRule.COMPLETION


@dataclasses.dataclass(frozen=True)
class Churn:
    leave_per_window: float = 0.0  # probability a live peer leaves after a window
    join_per_window: float = 0.0   # expected joiners per window (Poisson)
    catch_up_windows: int = 1      # windows a joiner spends loading a checkpoint + replaying aggregates


@dataclasses.dataclass(frozen=True)
class Faults:
    straggler_fraction: float = 0.0  # peers whose compute is slower
    straggler_slowdown: float = 2.0
    upload_failure: float = 0.0      # probability an upload is lost


@dataclasses.dataclass(frozen=True)
class Work:
    """What one peer moves and computes per window (from the model preset and the run config)."""
    model: str
    params: int
    payload_bytes: int
    tokens_per_step: int
    inner_steps: int
    eval_tokens_per_uid: int = 0  # validator: sequences x length x 4 passes (own/random, before/after)
    eval_uids: int = 20


@dataclasses.dataclass(frozen=True)
class Timing:
    """Protocol timing rules (run config `run.*` and `peers.*`, neurons' WindowClock margins)."""
    window_s: float
    upload_span_s: float
    gather_timeout_s: float
    train_margin_s: float = TRAIN_MARGIN_S
    gather_margin_s: float = GATHER_MARGIN_S
    gather_peers: int = 20
    reserve_peers: int = 10
    refresh_windows: int = 2


@dataclasses.dataclass(frozen=True)
class Scenario:
    work: Work
    timing: Timing
    links: Links
    peers: int
    windows: int
    store: Store = Store()
    churn: Churn = Churn()
    faults: Faults = Faults()
    overlap: Overlap = Overlap.NONE
    validators: int = 1
    processes_per_host: int = 1  # busy while training (miners and the validator's evaluation)
    exchange_processes_per_host: int | None = None  # busy during gather + aggregate (default: the above)
    seed: int = 0
    applied: tuple[int, ...] = ()  # payloads applied per window (a recorded run's); empty: all in time

    def __post_init__(self):
        for name, v in (("peers", self.peers), ("windows", self.windows),
                        ("work.inner_steps", self.work.inner_steps), ("timing.gather_peers", self.timing.gather_peers)):
            if v < 1:
                raise ScenarioError(f"{name} must be >= 1, got {v}")
        for name, v in (("links.up_bps", self.links.up_bps), ("links.down_bps", self.links.down_bps),
                        ("store.egress_bps", self.store.egress_bps), ("timing.window_s", self.timing.window_s)):
            if not v > 0:
                raise ScenarioError(f"{name} must be > 0, got {v}")
        for name, v in (("faults.straggler_fraction", self.faults.straggler_fraction),
                        ("faults.upload_failure", self.faults.upload_failure),
                        ("churn.leave_per_window", self.churn.leave_per_window)):
            if not 0 <= v <= 1:
                raise ScenarioError(f"{name} must be in [0, 1], got {v}")
        if any(n < 0 for n in self.applied):
            raise ScenarioError(f"applied must be counts >= 0, got {self.applied}")

    def parts(self) -> int:
        return max(1, math.ceil(self.work.payload_bytes / self.store.part_size))


ASSUMPTIONS = "Assumptions" + __doc__.split("Assumptions", 1)[1]


def mbit(x: float) -> float:
    """Mbit/s -> bit/s."""
    return x * 1e6
