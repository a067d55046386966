"""The small objects the leader validator publishes in its bucket and every neuron reads: the
run's start window and the peer lists (who is gathered, who stands in reserve, from which window).
A missing or malformed object reads as None: a reader falls back, it never crashes."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Sequence

from templar_jax.storage.bucket import Bucket
from templar_jax.storage.keys import parse_peers_key, peers_key, start_window_key
from templar_jax.untrusted_json import json_int, json_int_list, loads_untrusted

log = logging.getLogger(__name__)


class LeaderObjectError(ValueError):
    """A leader's published object (start window, peer list) is malformed (reason in message)."""


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
        """Parse a published list; LeaderObjectError for anything malformed."""
        obj = loads_untrusted(data, "peer list", error=LeaderObjectError)
        if not isinstance(obj, dict):
            raise LeaderObjectError("peer list is not a JSON object")
        return cls(json_int(obj.get("first_effective_window"), "peer list first_effective_window",
                            error=LeaderObjectError, minimum=0),
                   json_int_list(obj.get("gather"), "peer list gather", error=LeaderObjectError, minimum=0),
                   json_int_list(obj.get("reserve"), "peer list reserve", error=LeaderObjectError, minimum=0))


def parse_start_window(data: bytes) -> int:
    """The start window of a published object; LeaderObjectError for anything malformed."""
    obj = loads_untrusted(data, "start_window object", error=LeaderObjectError)
    if not isinstance(obj, dict):
        raise LeaderObjectError("start_window object is not a JSON object")
    return json_int(obj.get("start_window"), "start_window", error=LeaderObjectError, minimum=0)


def read_start_window(leader: Bucket, version: str) -> int | None:
    try:
        data = leader.get(start_window_key(version), max_bytes=4096)
    except Exception:
        return None
    try:
        return parse_start_window(data)
    except LeaderObjectError as err:
        log.warning("leader's start_window object is malformed (%s); ignoring it", err)
        return None


def publish_start_window(bucket: Bucket, start: int, version: str) -> None:
    bucket.put(start_window_key(version), json.dumps({"start_window": start}).encode())


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
        data = leader.get(best[1], max_bytes=1 << 20)
    except Exception as err:
        log.warning("peer list %s unreadable (%s)", best[1], err)
        return None
    try:
        return PeerList.from_json(data)
    except LeaderObjectError as err:
        log.warning("peer list %s malformed (%s)", best[1], err)
        return None


def publish_peer_list(bucket: Bucket, peers: PeerList, version: str) -> None:
    bucket.put(peers_key(peers.first_window, version), peers.to_json())


def default_peer_list(window: int, miner_uids: Sequence[int], n_gather: int, n_reserve: int) -> PeerList:
    """Before the leader has published a list: miners in uid order."""
    uids = sorted(miner_uids)
    return PeerList(window, uids[:n_gather], uids[n_gather:n_gather + n_reserve])
