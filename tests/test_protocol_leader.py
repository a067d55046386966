"""The leader's published objects (start window, peer lists) on a file bucket: what readers pick,
and that a missing or malformed object reads as None instead of raising."""

import pytest

from templar_jax.protocol.leader import (
    PeerList,
    default_peer_list,
    publish_peer_list,
    publish_start_window,
    read_peer_list,
    read_start_window,
)
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.keys import peers_key, start_window_key

VERSION = "0.1.0"


@pytest.fixture
def bucket(tmp_path):
    return Bucket.open(f"file://{tmp_path}/leader")


def test_start_window_round_trip_and_malformed(bucket):
    assert read_start_window(bucket, VERSION) is None
    publish_start_window(bucket, 17, VERSION)
    assert read_start_window(bucket, VERSION) == 17
    assert read_start_window(bucket, "9.9.9") is None  # another run version
    bucket.put(start_window_key(VERSION), b'{"start": 3}')
    assert read_start_window(bucket, VERSION) is None


def test_peer_list_json_round_trip():
    peers = PeerList(12, [1, 3], [5])
    assert PeerList.from_json(peers.to_json()) == peers


def test_read_peer_list_takes_the_latest_effective_one(bucket):
    assert read_peer_list(bucket, 10, VERSION) is None
    publish_peer_list(bucket, PeerList(5, [1, 2], [3]), VERSION)
    publish_peer_list(bucket, PeerList(9, [2, 3], [1]), VERSION)
    publish_peer_list(bucket, PeerList(12, [4], []), VERSION)
    publish_peer_list(bucket, PeerList(10, [7], []), "9.9.9")  # other version: ignored
    bucket.put("peers_junk", b"x")  # unparsable key: ignored
    assert read_peer_list(bucket, 4, VERSION) is None
    assert read_peer_list(bucket, 5, VERSION) == PeerList(5, [1, 2], [3])
    assert read_peer_list(bucket, 11, VERSION) == PeerList(9, [2, 3], [1])
    assert read_peer_list(bucket, 40, VERSION) == PeerList(12, [4], [])


def test_unreadable_peer_list_reads_as_none(bucket):
    bucket.put(peers_key(3, VERSION), b"not json")
    assert read_peer_list(bucket, 3, VERSION) is None


def test_default_peer_list_is_miners_in_uid_order():
    assert default_peer_list(7, [9, 2, 5, 1], n_gather=2, n_reserve=1) == PeerList(7, [1, 2], [5])
    assert default_peer_list(7, [3], n_gather=2, n_reserve=2) == PeerList(7, [3], [])
