"""One window's exchange, shared by miners and validators: which peers count (the leader's peer
list with reserve fill-in), gathering their payloads, validating them, and the aggregate.

Determinism matters: every honest neuron must aggregate the same payloads, so gathering starts
only after the upload window closed, validity depends only on the bytes and the storage
timestamps, and peers are taken in uid order.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from templar_jax.chain import Chain
from templar_jax.neurons.clock import window_start_time
from templar_jax.sparseloco import Payload
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.gather import GatherStatus, PeerSource, gather
from templar_jax.storage.keys import parse_peers_key, peers_key, start_window_key
from templar_jax.storage.timing import UploadWindow
from templar_jax.wire import PayloadError, decode, max_payload_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerList:
    first_window: int
    gather: list[int]
    reserve: list[int]

    def to_json(self) -> bytes:
        return json.dumps({"first_effective_window": self.first_window, "gather": self.gather,
                           "reserve": self.reserve}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "PeerList":
        obj = json.loads(data)
        ints = lambda xs: [int(x) for x in xs]  # noqa: E731
        return cls(int(obj["first_effective_window"]), ints(obj["gather"]), ints(obj["reserve"]))


@dataclass
class WindowPayloads:
    """Outcome of gathering one window: valid payloads and why the others were dropped."""

    window: int
    valid: dict[int, Payload] = field(default_factory=dict)
    stored_at: dict[int, float] = field(default_factory=dict)
    failed: dict[int, str] = field(default_factory=dict)  # uid -> reason
    invalid: set[int] = field(default_factory=set)  # failed because the bytes were bad
    raw: dict[int, bytes] = field(default_factory=dict)


def upload_window(chain: Chain, window: int, span_s: float) -> UploadWindow:
    """Uploads for `window` are accepted in [timestamp(first block of window+1), +span_s]."""
    return UploadWindow.after_block(window_start_time(chain, window + 1), late_grace_s=span_s)


def read_start_window(leader: Bucket, version: str) -> int | None:
    try:
        data = leader.get(start_window_key(version), max_bytes=4096)
    except Exception:
        return None
    try:
        return int(json.loads(data)["start_window"])
    except (ValueError, KeyError, TypeError):
        log.warning("leader's start_window object is malformed; ignoring it")
        return None


def read_peer_list(leader: Bucket, window: int, version: str) -> PeerList | None:
    """The latest peer list whose first effective window is <= window."""
    best: tuple[int, str] | None = None
    try:
        keys = leader.list("peers_")
    except Exception as err:
        log.warning("cannot list the leader's peer lists (%s)", err)
        return None
    for key in keys:
        try:
            first, ver = parse_peers_key(key)
        except ValueError:
            continue
        if ver == version and first <= window and (best is None or first > best[0]):
            best = (first, key)
    if best is None:
        return None
    try:
        return PeerList.from_json(leader.get(best[1], max_bytes=1 << 20))
    except Exception as err:
        log.warning("peer list %s unreadable (%s)", best[1], err)
        return None


def publish_peer_list(bucket: Bucket, peers: PeerList, version: str) -> None:
    bucket.put(peers_key(peers.first_window, version), peers.to_json())


def default_peer_list(window: int, miner_uids: Sequence[int], n_gather: int, n_reserve: int) -> PeerList:
    """Before the leader has published a list: miners in uid order."""
    uids = sorted(miner_uids)
    return PeerList(window, uids[:n_gather], uids[n_gather:n_gather + n_reserve])


def gather_window(
    window: int,
    uids: Sequence[int],
    buckets: Mapping[int, Bucket],
    *,
    chain: Chain,
    version: str,
    expected: Any,
    upload_span_s: float,
    deadline_s: float,
    chunk: int,
    topk: int,
    keep_raw: bool = False,
) -> WindowPayloads:
    """Fetch and validate `uids`' payloads for `window`. Never raises for a bad peer."""
    out = WindowPayloads(window)
    sources = []
    for uid in sorted(set(uids)):
        if uid in buckets:
            sources.append(PeerSource(uid, buckets[uid]))
        else:
            out.failed[uid] = "no usable bucket commitment"
    bound = max_payload_bytes(expected, chunk=chunk, topk=topk)
    outcomes = gather(sources, window, deadline_s, version=version, max_bytes=bound,
                      upload_window=upload_window(chain, window, upload_span_s))
    for oc in outcomes:
        if oc.status is not GatherStatus.OK:
            out.failed[oc.uid] = f"{oc.status.value}: {oc.reason}" if oc.reason else oc.status.value
            continue
        try:
            payload, _ = decode(oc.data, expected, chunk=chunk, topk=topk,
                                   expected_meta={"window": window, "uid": oc.uid, "version": version})
        except PayloadError as err:
            out.failed[oc.uid] = f"invalid: {err}"
            out.invalid.add(oc.uid)
            continue
        out.valid[oc.uid] = payload
        out.stored_at[oc.uid] = oc.stored_at or 0.0
        if keep_raw:
            out.raw[oc.uid] = oc.data
    return out


def select_contributors(peers: PeerList, valid: Mapping[int, Any]) -> list[int]:
    """Gather peers with a valid payload; a missing one is replaced by reserves in list order."""
    chosen = [u for u in peers.gather if u in valid]
    missing = len(peers.gather) - len(chosen)
    for u in peers.reserve:
        if missing <= 0:
            break
        if u in valid and u not in chosen:
            chosen.append(u)
            missing -= 1
    return sorted(chosen)
