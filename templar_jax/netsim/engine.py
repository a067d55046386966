"""The event simulation: every peer's phases in every window on the chain's clock.

Windows are processed in order; within a window each peer's events (train start and end,
prepare end, upload end, gather start, download end, ready) are computed from the previous
window's events, its link and the stage costs, and the gather couples peers through who
uploaded in time and how many readers share each bucket. See scenario.py for the assumptions.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from templar_jax.netsim.calibration import StageCosts
from templar_jax.netsim.scenario import Overlap, Scenario, StampRule


@dataclasses.dataclass
class PeerWindow:
    """One peer's window: phase intervals (unix-like seconds from t=0) and what they produced."""
    window: int
    peer: int
    status: str  # ok | catching_up | no_steps
    inner_steps: int = 0
    compute_s: float = 0.0  # train + compress + encode (the neurons' compute_s)
    comm_s: float = 0.0     # communication on the peer's critical path (clock waits not counted)
    upload_s: float = 0.0
    download_s: float = 0.0
    aggregate_s: float = 0.0
    uploaded: bool = False
    accepted: bool = False  # upload landed in the upload window
    late: bool = False
    gathered: int = 0
    timeouts: int = 0
    download_limit: str = ""  # what set the download rate: "download link" or "bucket egress"
    truncated: bool = False  # the train deadline cut inner steps
    land_s: float = 0.0  # overlap full: the training thread's time on this window's landing (wait + rebase)
    landed_after_steps: int | None = None  # overlap full: inner steps of the next window before it landed
    segments: list = dataclasses.field(default_factory=list)  # (phase, start, end)


@dataclasses.dataclass
class SimResult:
    scenario: Scenario
    records: list[PeerWindow]
    gather_sets: list[list[int]]  # per window: the peers whose payloads were aggregated
    validator_eval_s: float = 0.0  # the validator's Gauntlet forward passes per window


def _link_draws(sc: Scenario, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = sc.links.spread
    up = sc.links.up_bps * np.exp(rng.normal(0, s, n)) if s else np.full(n, sc.links.up_bps)
    down = sc.links.down_bps * np.exp(rng.normal(0, s, n)) if s else np.full(n, sc.links.down_bps)
    return up, down


@dataclasses.dataclass
class Landing:
    """Overlap full (the neurons' sparseloco.overlap): window W's outer step, computed on the comm
    lane by `ready`, lands on the next window's training between inner steps (after k of them),
    or at the end of its steps at the latest, where the training thread waits for it. What the
    training thread spends on it (wait + rebase) is reported on W's record, as the miner does,
    less the part of the wait while the upload window was still open (the clock's, which the
    synchronous loop does not count either)."""
    ready: float
    rebase_s: float
    record: PeerWindow
    clock_wait: tuple[float, float]  # (upload end, gather start) on the comm lane

    def land(self, start: float, step_s: float, steps: int) -> tuple[float, float]:
        """(seconds on the training thread, when they start) for a window training `steps` from `start`."""
        end = start + steps * step_s
        if steps and self.ready < end:
            k = max(0, math.ceil((self.ready - start) / step_s))
            at, wait = start + k * step_s, 0.0
        else:
            k, at, wait = steps, end, max(0.0, self.ready - end)
            wait -= max(0.0, min(self.ready, self.clock_wait[1]) - max(at, self.clock_wait[0]))
        self.record.land_s = wait + self.rebase_s
        self.record.comm_s += self.record.land_s
        self.record.landed_after_steps = k
        return self.record.land_s, at

    def land_idle(self) -> float:
        """After the last window: no training; the miner waits from its upload's submission."""
        return self.land(self.clock_wait[0] - self.record.upload_s, 1.0, 0)[0]


def _transfer_s(nbytes: int, rate_bps: float, parts: int, parallel: int, request_s: float, latency_s: float) -> float:
    return latency_s + math.ceil(parts / parallel) * request_s + 8.0 * nbytes / rate_bps


def simulate(sc: Scenario, costs: StageCosts) -> SimResult:
    from templar_jax.sparseloco.payload import peer_bucket  # the neurons' compile-once padding rule

    rng = np.random.default_rng(sc.seed)
    work, tm, store = sc.work, sc.timing, sc.store
    cap = sc.peers + int(sc.churn.join_per_window * sc.windows * 3) + 16
    up_bps, down_bps = _link_draws(sc, rng, cap)
    straggler = rng.random(cap) < sc.faults.straggler_fraction
    host_slow = costs.host_slowdown(sc.processes_per_host)
    exchange_slow = costs.host_slowdown(sc.exchange_processes_per_host or sc.processes_per_host)
    step_base = work.tokens_per_step / costs["train_tokens_per_s"] + costs["train_step_overhead_s"]
    prep_base = work.params * (costs["compress_s_per_param"] + costs["encode_s_per_param"])
    parts, request_s = sc.parts(), costs["store_request_s"]

    alive = list(range(sc.peers))
    catching: dict[int, int] = {}  # peer -> windows of catch-up left
    next_peer = sc.peers
    train_ready = np.zeros(cap)  # earliest start of the next window's training
    stall = np.zeros(cap)        # aggregate work that interrupts the next window's training
    peer_list: list[int] = []
    compiled: dict[int, set[int]] = {}  # peer -> padded peer counts its aggregation has used
    landing: dict[int, Landing] = {}  # overlap full: each peer's exchange in flight
    records: list[PeerWindow] = []
    gather_sets: list[list[int]] = []

    for w in range(sc.windows):
        t0, t1 = w * tm.window_s, (w + 1) * tm.window_s
        deadline, up_close = t1 - tm.train_margin_s, t1 + tm.upload_span_s
        gather_at = up_close + tm.gather_margin_s
        if w % tm.refresh_windows == 0 or not peer_list:
            order = list(rng.permutation(alive)) if alive else []
            peer_list = [int(p) for p in order[:tm.gather_peers + tm.reserve_peers]]
        rows: dict[int, PeerWindow] = {}
        for p in alive:
            if catching.get(p, 0) > 0:
                catching[p] -= 1
                rows[p] = PeerWindow(w, p, "catching_up", segments=[("catch_up", t0, t1)])
                train_ready[p] = t1
                continue
            slow = host_slow * (sc.faults.straggler_slowdown if straggler[p] else 1.0)
            start = max(t0, train_ready[p]) + stall[p]
            step_s = step_base * slow
            pending = landing.pop(p, None)
            rebase_s = pending.rebase_s if pending else 0.0
            steps = min(work.inner_steps, max(0, int((deadline - start - rebase_s) / step_s)))
            r = PeerWindow(w, p, "ok" if steps else "no_steps", inner_steps=steps)
            r.truncated = steps < work.inner_steps
            train_end = start + steps * step_s
            landed_s, land_at = pending.land(start, step_s, steps) if pending else (0.0, start)
            train_end += landed_s
            prep_end = train_end + (prep_base * slow if steps else 0.0)
            r.compute_s = prep_end - start - landed_s  # the miner counts the landing as communication
            r.segments += [("train", start, train_end), ("prepare", train_end, prep_end)]
            if pending:  # drawn over the training it interrupts
                r.segments.append(("land", land_at, land_at + landed_s))
            up_start = max(prep_end, t1)
            if steps:
                r.upload_s = float(_transfer_s(work.payload_bytes, min(up_bps[p], store.egress_bps), parts,
                                         store.parallel_parts, request_s, sc.links.latency_s))
                r.uploaded = bool(rng.random() >= sc.faults.upload_failure)
                stamp = up_start + r.upload_s if store.stamp == StampRule.COMPLETION else up_start
                r.accepted = bool(r.uploaded and stamp <= up_close)
                r.late = r.uploaded and not r.accepted
                r.segments.append(("upload", up_start, up_start + r.upload_s))
            rows[p] = r
        gathered = [p for p in peer_list if p in rows and rows[p].accepted][:tm.gather_peers]
        if w < len(sc.applied):
            gathered = gathered[:sc.applied[w]]
        gather_sets.append(gathered)
        readers = sum(1 for r in rows.values() if r.status != "catching_up") + sc.validators
        for p, r in rows.items():
            if r.status == "catching_up":
                continue
            prep_end = next(end for name, _, end in r.segments if name == "prepare")
            up_end = max(t1, prep_end) + r.upload_s  # as the first loop: training may start after t0
            g_start = max(gather_at, up_end if r.uploaded else gather_at)
            if gathered:
                link, egress = float(down_bps[p] / len(gathered)), store.egress_bps / max(1, readers)
                rate = min(link, egress)
                r.download_limit = "download link" if link <= egress else "bucket egress"
                one = _transfer_s(work.payload_bytes, rate, parts, store.parallel_parts, request_s, sc.links.latency_s)
                r.timeouts = len(gathered) if one > tm.gather_timeout_s else 0
                r.download_s = min(one, tm.gather_timeout_s)
            r.gathered = len(gathered) - r.timeouts
            slow = exchange_slow * (sc.faults.straggler_slowdown if straggler[p] else 1.0)
            per_param = costs["decode_s_per_param"] + costs["aggregate_s_per_param"]
            seen = compiled.setdefault(p, set())
            first_use = r.gathered > 0 and peer_bucket(r.gathered) not in seen
            if r.gathered:
                seen.add(peer_bucket(r.gathered))
            r.aggregate_s = slow * (work.params * r.gathered * per_param + costs["apply_s"]
                                    + (costs["aggregate_first_use_s"] if first_use else 0.0))
            d_end = g_start + r.download_s
            r.segments += [("download", g_start, d_end), ("aggregate", d_end, d_end + r.aggregate_s)]
            if sc.overlap == Overlap.NONE:
                r.comm_s = r.upload_s + r.download_s + r.aggregate_s
                train_ready[p], stall[p] = d_end + r.aggregate_s, 0.0
            elif sc.overlap == Overlap.AFTER_UPLOAD:
                r.comm_s = r.upload_s + r.aggregate_s
                train_ready[p], stall[p] = up_end, r.aggregate_s
            else:  # the comm lane uploads, gathers and steps; the next window's training lands it
                rebase = work.params * costs["rebase_s_per_param"] * host_slow
                landing[p] = Landing(d_end + r.aggregate_s, rebase, r, (up_end, g_start))
                train_ready[p], stall[p] = prep_end, 0.0
        records += rows.values()
        # churn after the window: leavers go, joiners start catching up
        alive = [p for p in alive if rng.random() >= sc.churn.leave_per_window]
        for _ in range(rng.poisson(sc.churn.join_per_window) if sc.churn.join_per_window else 0):
            if next_peer < cap:
                alive.append(next_peer)
                catching[next_peer] = sc.churn.catch_up_windows
                train_ready[next_peer] = t1
                next_peer += 1
    for pending in landing.values():  # the run's last exchanges, as the miner lands them at the end
        pending.land_idle()
    evaluated = min(work.eval_uids, sc.peers)
    eval_s = host_slow * evaluated * work.eval_tokens_per_uid * costs["eval_s_per_token"]
    return SimResult(sc, records, gather_sets, eval_s)
