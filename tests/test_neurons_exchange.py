"""One window's exchange over file buckets: which payloads gather_window accepts (and why the
others are dropped), and which of them count (select_contributors: peer list + reserves)."""

import time

import numpy as np
import pytest

from templar_jax.neurons.exchange import gather_window, select_contributors
from templar_jax.protocol.leader import PeerList
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.keys import gradient_key
from templar_jax.storage.timing import UploadWindow
from templar_jax.wire import encode, expected_table
from templar_jax.wire.synthetic import random_payload

VERSION = "0.1.0"
WINDOW = 4
SHAPES = {"embed/embedding": (128, 64), "layers/attn/wq": (2, 64, 64), "final_norm/scale": (64,)}


@pytest.fixture(scope="module")
def table():
    return expected_table(SHAPES)


def _upload(tmp_path, uid, data, window=WINDOW):
    bucket = Bucket.open(f"file://{tmp_path}/b{uid}")
    if data is not None:
        bucket.put(gradient_key(window, uid, VERSION), data)
    return bucket


def _payload_bytes(table, uid, window=WINDOW, seed=None):
    payload = random_payload(np.random.default_rng(uid if seed is None else seed), table)
    return payload, encode(payload, {"window": window, "uid": uid, "version": VERSION}, expected=table)


def _gather(table, uids, buckets, upload, keep_raw=False):
    return gather_window(WINDOW, uids, buckets, upload=upload, version=VERSION, expected=table,
                         deadline_s=10.0, chunk=64, topk=64, keep_raw=keep_raw)


def test_gather_keeps_valid_payloads_and_names_why_others_failed(tmp_path, table):
    now = time.time()
    open_now = UploadWindow(now - 60, now + 60)
    good, good_bytes = _payload_bytes(table, 1)
    buckets = {
        1: _upload(tmp_path, 1, good_bytes),
        2: _upload(tmp_path, 2, good_bytes[: len(good_bytes) // 2] + bytes(len(good_bytes) // 2 + 1)),
        3: _upload(tmp_path, 3, _payload_bytes(table, 1)[1]),  # signed as uid 1: not its own
        5: _upload(tmp_path, 5, None),  # nothing uploaded
    }
    got = _gather(table, [5, 3, 2, 1, 4, 1], buckets, open_now, keep_raw=True)
    assert set(got.valid) == {1}
    for name, tp in good.items():
        np.testing.assert_array_equal(np.asarray(got.valid[1][name].idx), np.asarray(tp.idx))
    assert got.raw == {1: good_bytes}
    assert now - 60 <= got.stored_at[1] <= time.time() + 1
    assert got.invalid == {2, 3}
    assert got.failed[2].startswith("invalid:") and got.failed[3].startswith("invalid:")
    assert got.failed[4] == "no usable bucket commitment"
    assert got.failed[5].startswith("missing")
    assert set(got.failed) == {2, 3, 4, 5}


def test_gather_drops_uploads_outside_the_upload_window(tmp_path, table):
    buckets = {1: _upload(tmp_path, 1, _payload_bytes(table, 1)[1])}
    now = time.time()
    closed = _gather(table, [1], buckets, UploadWindow(now - 120, now - 60))
    assert closed.valid == {} and closed.failed[1].startswith("too_late")
    early = _gather(table, [1], buckets, UploadWindow(now + 60, now + 120))
    assert early.valid == {} and early.failed[1].startswith("too_early")
    assert 1 not in closed.invalid and 1 not in early.invalid
    assert _gather(table, [1], buckets, UploadWindow(now - 60, now + 60)).raw == {}  # no keep_raw


def test_select_contributors_fills_missing_gather_peers_from_reserves():
    peers = PeerList(WINDOW, gather=[3, 1, 5], reserve=[7, 2, 9])
    assert select_contributors(peers, {1: 0, 3: 0, 5: 0, 7: 0}) == [1, 3, 5]  # no reserve needed
    assert select_contributors(peers, {1: 0, 2: 0, 9: 0}) == [1, 2, 9]  # 3, 5 missing: 2 then 9
    assert select_contributors(peers, {5: 0, 9: 0, 2: 0, 7: 0}) == [2, 5, 7]  # reserve order, not uid
    assert select_contributors(peers, {4: 0, 6: 0}) == []  # not on the list: never counts
    assert select_contributors(PeerList(WINDOW, [1, 2], [2]), {2: 0}) == [2]  # a reserve counts once
