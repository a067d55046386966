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


# --- hostile bytes in the leader's objects (issue 22): a typed error or None, nothing else ----

DEEP = b"[" * 100_000 + b"]" * 100_000  # RecursionError inside json.loads
HOSTILE_START = {
    "deep nesting": DEEP,
    "deep value": b'{"start_window": ' + b"[" * 3000 + b"]" * 3000 + b"}",
    "Infinity": b'{"start_window": Infinity}',
    "float overflow": b'{"start_window": 1e400}',  # a float inf: int() raised OverflowError
    "NaN": b'{"start_window": NaN}',
    "bool": b'{"start_window": true}',
    "float": b'{"start_window": 3.5}',
    "negative": b'{"start_window": -2}',
    "not an object": b"[17]",
    "bad utf-8": b'{"start_window": "\xff"}',
    "digits past the int limit": b'{"start_window": ' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("case", list(HOSTILE_START))
def test_hostile_start_window_reads_as_none(bucket, case):
    from templar_jax.protocol.leader import LeaderObjectError, parse_start_window

    data = HOSTILE_START[case]
    if len(data) <= 4096:  # what read_start_window fetches at most
        bucket.put(start_window_key(VERSION), data)
        assert read_start_window(bucket, VERSION) is None
    with pytest.raises(LeaderObjectError, match="start_window"):
        parse_start_window(data)


HOSTILE_PEERS = {
    "deep nesting": DEEP,
    "float overflow": b'{"first_effective_window": 1e400, "gather": [], "reserve": []}',
    "Infinity uid": b'{"first_effective_window": 3, "gather": [Infinity], "reserve": []}',
    "huge float uid": b'{"first_effective_window": 3, "gather": [1e400], "reserve": []}',
    "bool uid": b'{"first_effective_window": 3, "gather": [true], "reserve": []}',
    "string list": b'{"first_effective_window": 3, "gather": "12", "reserve": []}',
    "missing": b'{"first_effective_window": 3, "gather": [1]}',
    "not an object": b"[3, [1], []]",
}


@pytest.mark.parametrize("case", list(HOSTILE_PEERS))
def test_hostile_peer_list_is_a_typed_error_and_reads_as_none(bucket, case):
    from templar_jax.protocol.leader import LeaderObjectError

    with pytest.raises(LeaderObjectError, match="peer list"):
        PeerList.from_json(HOSTILE_PEERS[case])
    bucket.put(peers_key(3, VERSION), HOSTILE_PEERS[case])
    assert read_peer_list(bucket, 3, VERSION) is None


def _aggregator(header: bytes, body: bytes = b"") -> bytes:
    import struct

    from templar_jax.protocol.aggregator_object import MAGIC

    return MAGIC + struct.pack("<I", len(header)) + header + body


HOSTILE_AGGREGATOR = {
    "deep nesting": _aggregator(b"[" * 30_000 + b"]" * 30_000),
    "float overflow window": _aggregator(b'{"window": 1e400, "uids": [], "sizes": []}'),
    "Infinity size": _aggregator(b'{"window": 3, "uids": [1], "sizes": [Infinity]}'),
    "huge float uid": _aggregator(b'{"window": 3, "uids": [1e400], "sizes": [0]}'),
    "float size": _aggregator(b'{"window": 3, "uids": [1], "sizes": [2.5]}', b"ab"),
    "bool uid": _aggregator(b'{"window": 3, "uids": [true], "sizes": [0]}'),
    "not an object": _aggregator(b"[3]"),
    "bad utf-8": _aggregator(b'{"window": "\xff"}'),
    "header past the end": _aggregator(b'{"window": 3, "uids": [], "sizes": []}')[:-4],
}


@pytest.mark.parametrize("case", list(HOSTILE_AGGREGATOR))
def test_hostile_aggregator_header_is_a_typed_error(case):
    from templar_jax.protocol.aggregator_object import (
        AggregatorObjectError, decode_aggregator, encode_aggregator)

    with pytest.raises(AggregatorObjectError):
        decode_aggregator(HOSTILE_AGGREGATOR[case])
    good = encode_aggregator(3, {2: b"xy", 1: b"z"})
    assert decode_aggregator(good, window=3) == {1: b"z", 2: b"xy"}
