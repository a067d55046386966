"""The dashboard of a live network, from what its neurons publish on chain and in the leader's
bucket, for operators who hold no run folder: registered uids with stake and role, the leader's
weights (sampled at each poll), and each window's aggregate object header (who was aggregated,
each payload's size), read by byte range so no payload is downloaded.

    live = LiveNetwork(chain, PeerDirectory(chain).bucket, version="demo", name="local demo")
    DashboardServer(live, port=8050).start()
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from templar_jax.chain import Chain
from templar_jax.chain.errors import ChainError
from templar_jax.dashboard.state import RECENT_WINDOWS
from templar_jax.protocol.aggregator_object import (
    HEADER_PREFIX,
    AggregatorHeader,
    AggregatorObjectError,
    header_length,
    parse_aggregator_header,
)
from templar_jax.protocol.leader import LeaderObjectError, read_start_window
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.errors import ObjectNotFound, StorageError
from templar_jax.storage.keys import aggregator_key

log = logging.getLogger(__name__)
RETRY_WINDOWS = 3  # a missing aggregate of a recent window may still be on its way: look again


def read_aggregator_header(bucket: Bucket, window: int, version: str) -> AggregatorHeader | None:
    """The leader's aggregate header for `window` (two ranged reads); None when not published."""
    key = aggregator_key(window, version)
    try:
        hlen = header_length(bucket.get_range(key, 0, HEADER_PREFIX))
        return parse_aggregator_header(bucket.get_range(key, 0, HEADER_PREFIX + hlen), window=window)
    except ObjectNotFound:
        return None


class LiveNetwork:
    """A dashboard state source (`get()`) polling `chain` and the leader's bucket at most every
    `min_poll_s`; what it samples over time (weights) lives in memory since it started."""

    def __init__(self, chain: Chain, leader_bucket: Callable[[int], Bucket | None], *, version: str, name: str,
                 min_poll_s: float = 5.0, clock: Callable[[], float] = time.time):
        self.chain, self.leader_bucket, self.version, self.name = chain, leader_bucket, version, name
        self.min_poll_s, self.clock = min_poll_s, clock
        self.aggregates: dict[int, AggregatorHeader] = {}
        self.seen_at: dict[int, float] = {}  # window -> when its aggregate was first read
        self.weights: dict[int, dict[int, float]] = {}  # window -> the leader's weights then
        self._lock = threading.Lock()
        self._state: dict | None = None
        self._polled = float("-inf")

    def get(self) -> dict:
        with self._lock:
            now = self.clock()
            if self._state is None or now - self._polled >= self.min_poll_s:
                try:
                    self._state = self._poll(now)
                except (ChainError, StorageError) as err:  # keep the last state; poll again later
                    if self._state is None:
                        raise
                    log.warning("polling the network failed (%s); showing the last state", err)
                self._polled = now
            return {**self._state, "now": now}

    def _read_aggregates(self, bucket: Bucket, window: int, now: float) -> None:
        try:
            start = read_start_window(bucket, self.version)
        except (LeaderObjectError, StorageError) as err:
            log.warning("leader's start window unreadable (%s)", err)
            return
        if start is None:
            return
        for w in range(max(start, window - RECENT_WINDOWS), window):
            if w in self.aggregates or (w in self.seen_at and w < window - RETRY_WINDOWS):
                continue
            try:
                header = read_aggregator_header(bucket, w, self.version)
            except (AggregatorObjectError, StorageError) as err:
                log.warning("window %d: leader's aggregate unreadable (%s)", w, err)
                header = None
            self.seen_at.setdefault(w, now)
            if header is not None:
                self.aggregates[w] = header

    def _poll(self, now: float) -> dict:
        graph, window = self.chain.metagraph(), self.chain.current_window()
        leader = graph.leader_uid
        if leader is not None:
            self.weights[window] = dict(self.chain.weights().get(leader, {}))
            bucket = self.leader_bucket(leader)
            if bucket is not None:
                self._read_aggregates(bucket, window, now)
        return self._state_dict(graph, window, leader)

    def _state_dict(self, graph, window: int, leader: int | None) -> dict:
        validators = set(graph.validator_uids)
        miners = [u for u in graph.uids if u not in validators]
        last = max(self.aggregates, default=None)
        aggregated = self.aggregates[last] if last is not None else None
        in_last = dict(zip(aggregated.uids, aggregated.sizes)) if aggregated else {}
        weights = self.weights.get(window, {})
        last_seen = {u: max((w for w, h in self.aggregates.items() if u in h.uids), default=None) for u in miners}
        peers = [{"uid": u, "behavior": graph.hotkey_of(u), "status": "ok" if u in in_last else "not aggregated",
                  "reason": "" if u in in_last or last is None else f"not in window {last}'s aggregate",
                  "train_loss": None, "loss_score": None, "final": None, "weight": weights.get(u, 0.0),
                  "evaluated": None, "gathered": u in in_last} for u in miners]
        neurons = [{"key": f"{'validator' if u in validators else 'miner'}-{u}",
                    "role": "validator" if u in validators else "miner", "uid": u,
                    "state": "leader" if u == leader else f"stake {graph.stake_of(u):g}",
                    "last_window": last if u == leader else last_seen.get(u), "last_t": None, "metrics_url": None}
                   for u in sorted(graph.uids, key=lambda u: (u not in validators, u))]
        windows = [{"window": w, "t": self.seen_at.get(w), "compute_s": None, "comm_s": None, "gather_s": None,
                    "aggregated": len(h.uids), "payload_bytes": sum(h.sizes),
                    "outcomes": {"aggregated": len(h.uids), "not aggregated": len(set(miners) - set(h.uids))},
                    "phases": {}} for w, h in sorted(self.aggregates.items())[-RECENT_WINDOWS:]]
        weight_series = {u: [[w, ws.get(u, 0.0)] for w, ws in sorted(self.weights.items())] for u in miners}
        return {"run": self.name, "last_event_t": None, "window": window, "scored_window": last,
                "heldout_loss": None, "neurons": neurons, "peers": peers, "windows": windows,
                "series": {"train_loss": {}, "heldout_loss": [], "weight": weight_series, "final": {}}}
