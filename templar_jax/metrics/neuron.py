"""A neuron's Prometheus metrics, kept up to date from its event records.

`NeuronMetrics` is an event sink (`EventLog.subscribe`): every figure it exports is one the
neuron already logs (templar_jax.events), so the JSONL log, the dashboard and the scrape agree.

    metrics = NeuronMetrics(role="miner", uid=3, tokens_per_step=8 * 127)
    events.subscribe(metrics)
    generate_latest(metrics.registry)  # text exposition; `serve_metrics` serves it over HTTP
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Info

SCORE_KINDS = ("loss_score", "final", "bma", "sync")


def reason_kind(reason: str) -> str:
    """The label of a gather failure: its reason's first word ('missing: ... not found' -> 'missing')."""
    return reason.split(":")[0].strip() or "unknown"


class NeuronMetrics:
    """Gauges and counters of one miner or validator, fed with its event records.

    `tokens_per_step` (sequences x target positions per inner step) turns the miner's inner steps
    into tokens; with `flops_per_token` and `peak_flops` (all devices together) it exports MFU.
    """

    def __init__(self, *, role: str, uid: int, tokens_per_step: int = 0, flops_per_token: float = 0.0,
                 peak_flops: float = 0.0, registry: CollectorRegistry | None = None):
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.role, self.uid = role, uid
        self.tokens_per_step, self.flops_per_token, self.peak_flops = tokens_per_step, flops_per_token, peak_flops
        self.info = Info("templar_neuron", "who this neuron is", registry=r)
        self.info.info({"role": role, "uid": str(uid), "behavior": ""})
        self.window = Gauge("templar_window", "the last window this neuron finished", registry=r)
        self.windows = Counter("templar_windows", "windows finished, by status (ok, behind, scored)",
                               ["status"], registry=r)
        self.last_event = Gauge("templar_last_event_timestamp_seconds", "when the last event was logged",
                                registry=r)
        self.phase = Gauge("templar_phase_seconds", "seconds spent in each phase of the last window "
                           "(miner: compute = train + compress + encode, communication = upload + gather; "
                           "validator: gather)", ["phase"], registry=r)
        self.phase_total = Counter("templar_time_spent_seconds", "seconds spent in each phase, all windows",
                                   ["phase"], registry=r)
        self.window_phase = Gauge("templar_window_phase_seconds", "seconds of each logged phase of the last "
                                  "window (train, compress, upload, gather, outer_step, ...), by thread lane",
                                  ["phase", "lane"], registry=r)
        self.window_phase_total = Counter("templar_window_phase_time_seconds", "seconds of each logged phase, "
                                          "all windows", ["phase", "lane"], registry=r)
        self.gather = Counter("templar_gather_outcomes", "peers gathered, by peer uid and outcome (ok or the "
                              "reason's kind: missing, late, invalid, ...)", ["peer", "outcome"], registry=r)
        self.gather_last = Gauge("templar_gather_peers", "peers of the last window's gather, by outcome",
                                 ["outcome"], registry=r)
        if role == "miner":
            self._miner_metrics(r)
        else:
            self._validator_metrics(r)
        self._status: dict[str, str] = {}  # peer -> the status its templar_peer_status series holds
        self._outcomes: set[str] = set()  # every gather outcome seen, zeroed when absent from a window
        self._lock = threading.Lock()

    def _miner_metrics(self, r: CollectorRegistry) -> None:
        self.train_loss = Gauge("templar_train_loss", "mean inner-loop loss of the last window", registry=r)
        self.tokens = Counter("templar_tokens", "tokens (target positions) trained", registry=r)
        self.tokens_per_s = Gauge("templar_tokens_per_second", "tokens trained per second of the last "
                                  "window's compute phase", registry=r)
        self.mfu = Gauge("templar_mfu_ratio", "model FLOPs utilization of the last window's compute phase (0..1)",
                         registry=r) if self.peak_flops > 0 else None
        self.payload_bytes: Gauge | None = None  # made by the first event that reports the size
        self.uploads = Counter("templar_uploads", "upload attempts, by outcome (ok, failed)", ["outcome"],
                               registry=r)
        self.catch_ups = Counter("templar_catch_ups", "times this miner rebuilt the global model", registry=r)

    def _validator_metrics(self, r: CollectorRegistry) -> None:
        self.heldout_loss = Gauge("templar_heldout_loss", "the global model's held-out loss", registry=r)
        self.score = Gauge("templar_peer_score", "Gauntlet scores of each peer", ["peer", "score"], registry=r)
        self.weight = Gauge("templar_peer_weight", "the weight this validator gives each peer", ["peer"],
                            registry=r)
        self.status = Gauge("templar_peer_status", "1 for each peer's current status (ok, missing, banned, "
                            "copy:..., ...)", ["peer", "status"], registry=r)
        self.evaluated = Gauge("templar_peer_evaluated", "1 when the peer was evaluated in the last window",
                               ["peer"], registry=r)
        self.weights_set = Counter("templar_weights_set", "windows in which weights were set on chain",
                                   registry=r)

    def __call__(self, record: dict) -> None:
        with self._lock:  # the overlapped miner emits from its comm thread too
            self._observe(record)

    def _observe(self, record: dict) -> None:
        self.last_event.set(float(record.get("t", 0.0)))
        handlers = {"started": self._started, "phase": self._logged_phase}
        if self.role == "miner":
            handlers.update(window=self._miner_window, caught_up=self._caught_up)
        else:
            handlers.update(scores=self._scores)
        handler = handlers.get(record.get("event", ""))
        if handler is not None:
            handler(record)

    def _started(self, ev: dict) -> None:
        self.info.info({"role": self.role, "uid": str(self.uid), "behavior": str(ev.get("behavior", ""))})

    def _logged_phase(self, ev: dict) -> None:
        seconds = max(0.0, float(ev["end"]) - float(ev["start"]))
        labels = (str(ev.get("phase", "unknown")), str(ev.get("lane", "main")))
        self.window_phase.labels(*labels).set(seconds)
        self.window_phase_total.labels(*labels).inc(seconds)

    def _caught_up(self, ev: dict) -> None:
        self.catch_ups.inc()

    def _phases(self, **seconds: float) -> None:
        for phase, s in seconds.items():
            self.phase.labels(phase).set(s)
            self.phase_total.labels(phase).inc(max(0.0, s))

    def _gathered(self, outcomes: dict[str, str]) -> None:
        """`outcomes`: peer uid -> 'ok' or a failure kind, for one window."""
        counts: dict[str, int] = {}
        for peer, outcome in outcomes.items():
            self.gather.labels(peer, outcome).inc()
            counts[outcome] = counts.get(outcome, 0) + 1
        self._outcomes |= set(counts)
        for outcome in self._outcomes:
            self.gather_last.labels(outcome).set(counts.get(outcome, 0))

    def _miner_window(self, ev: dict) -> None:
        self.window.set(ev["window"])
        self.windows.labels(ev.get("status", "ok")).inc()
        compute_s = float(ev.get("compute_s") or 0.0)
        self._phases(compute=compute_s, communication=float(ev.get("comm_s") or 0.0))
        if ev.get("train_loss") is not None:
            self.train_loss.set(ev["train_loss"])
        tokens = int(ev.get("inner_steps") or 0) * self.tokens_per_step
        self.tokens.inc(tokens)
        rate = tokens / compute_s if compute_s > 0 else 0.0
        self.tokens_per_s.set(rate)
        if self.mfu is not None:
            self.mfu.set(self.flops_per_token * rate / self.peak_flops)
        if ev.get("inner_steps"):
            self.uploads.labels("ok" if ev.get("uploaded") else "failed").inc()
        if ev.get("payload_bytes") is not None:
            if self.payload_bytes is None:
                self.payload_bytes = Gauge("templar_payload_bytes", "bytes of the last uploaded payload",
                                           registry=self.registry)
            self.payload_bytes.set(ev["payload_bytes"])
        outcomes = {str(u): "ok" for u in ev.get("gathered") or []}
        outcomes.update({str(u): reason_kind(r) for u, r in (ev.get("skipped") or {}).items()})
        self._gathered(outcomes)

    def _scores(self, ev: dict) -> None:
        self.window.set(ev["window"])
        self.windows.labels("scored").inc()
        self._phases(gather=float(ev.get("gather_s") or 0.0))
        if ev.get("heldout_loss") is not None:
            self.heldout_loss.set(ev["heldout_loss"])
        if ev.get("weights_set"):
            self.weights_set.inc()
        outcomes = {}
        for peer, rec in (ev.get("uids") or {}).items():
            for kind in SCORE_KINDS:
                if rec.get(kind) is not None:
                    self.score.labels(peer, kind).set(rec[kind])
            self.weight.labels(peer).set(rec.get("weight") or 0.0)
            self.evaluated.labels(peer).set(1.0 if rec.get("evaluated") else 0.0)
            status = str(rec.get("status", "unknown"))
            self._set_status(peer, status)
            outcomes[peer] = "ok" if rec.get("gathered") else reason_kind(status)
        self._gathered(outcomes)

    def _set_status(self, peer: str, status: str) -> None:
        old = self._status.get(peer)
        if old is not None and old != status:
            self.status.remove(peer, old)
        self.status.labels(peer, status).set(1.0)
        self._status[peer] = status

