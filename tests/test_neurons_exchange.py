"""One window's exchange over file buckets: which payloads gather_window accepts (and why the
others are dropped), and which of them count (select_contributors: peer list + reserves)."""

import time

import numpy as np
import pytest

from templar_jax.neurons.exchange import gather_window, select_contributors
from templar_jax.neurons.spool import PayloadSpool, SpooledPayload
from templar_jax.protocol.codec import PayloadCodec
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
    codec = PayloadCodec(table, chunk=64, topk=64, index_coding="elias-fano")
    return gather_window(WINDOW, uids, buckets, upload=upload, version=VERSION, codec=codec,
                         deadline_s=10.0, keep_raw=keep_raw)


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


def test_a_spooled_gather_keeps_payloads_on_disk_with_the_same_contents(tmp_path, table):
    now = time.time()
    open_now = UploadWindow(now - 60, now + 60)
    payloads, buckets = {}, {}
    for uid in (1, 2, 3):
        payloads[uid], data = _payload_bytes(table, uid)
        buckets[uid] = _upload(tmp_path, uid, data)
    buckets[4] = _upload(tmp_path, 4, _payload_bytes(table, 1)[1])  # signed as uid 1: invalid
    codec = PayloadCodec(table, chunk=64, topk=64, index_coding="elias-fano", workers=2)
    spool = PayloadSpool(tmp_path / "spool", codec)
    got = gather_window(WINDOW, [1, 2, 3, 4], buckets, upload=open_now, version=VERSION, codec=codec,
                        deadline_s=10.0, keep_raw=True, spool=spool, in_flight=1)
    assert list(got.valid) == [1, 2, 3] and got.invalid == {4} and got.failed[4].startswith("invalid:")
    for uid, payload in payloads.items():
        spooled = got.valid[uid]
        assert isinstance(spooled, SpooledPayload) and list(spooled) == list(SHAPES) and "nope" not in spooled
        for name, tp in payload.items():
            for want, have in zip(tp, spooled[name]):
                np.testing.assert_array_equal(np.asarray(have), np.asarray(want))
        assert got.raw[uid] == buckets[uid].get(gradient_key(WINDOW, uid, VERSION))
    assert sorted(p.name for p in (tmp_path / "spool" / f"window-{WINDOW}").iterdir()) == ["1.tjxw", "2.tjxw", "3.tjxw"]
    spool.clear()
    assert not (tmp_path / "spool").exists()


def test_select_contributors_fills_missing_gather_peers_from_reserves():
    peers = PeerList(WINDOW, gather=[3, 1, 5], reserve=[7, 2, 9])
    assert select_contributors(peers, {1: 0, 3: 0, 5: 0, 7: 0}) == [1, 3, 5]  # no reserve needed
    assert select_contributors(peers, {1: 0, 2: 0, 9: 0}) == [1, 2, 9]  # 3, 5 missing: 2 then 9
    assert select_contributors(peers, {5: 0, 9: 0, 2: 0, 7: 0}) == [2, 5, 7]  # reserve order, not uid
    assert select_contributors(peers, {4: 0, 6: 0}) == []  # not on the list: never counts
    assert select_contributors(PeerList(WINDOW, [1, 2], [2]), {2: 0}) == [2]  # a reserve counts once


def test_an_overflow_payload_is_counted_invalid_and_the_honest_aggregate_is_unchanged(tmp_path, table):
    """Issue 22: a payload built from a real compressed one, whose shift and lut are each finite
    but decode to inf, is counted invalid by the gather (so the validator slashes it), and the
    honest peers' aggregate is bit-identical whether or not it is handed to the aggregation."""
    from templar_jax.sparseloco import aggregate, compress_tensor
    from templar_jax.sparseloco.tree import flatten
    from templar_jax.wire.synthetic import overflow_payload

    rng = np.random.default_rng(5)

    def real(uid):
        payload = {name: compress_tensor(rng.standard_normal(shape).astype(np.float32),
                                         batch_ndim=table[name].batch_dims)
                   for name, shape in SHAPES.items()}
        return payload, encode(payload, {"window": WINDOW, "uid": uid, "version": VERSION}, expected=table)

    (p1, b1), (p2, b2), (p3, _) = real(1), real(2), real(3)
    bad = overflow_payload(p3)
    now = time.time()
    buckets = {1: _upload(tmp_path, 1, b1), 2: _upload(tmp_path, 2, b2),
               3: _upload(tmp_path, 3, encode(bad, {"window": WINDOW, "uid": 3, "version": VERSION},
                                              expected=table))}
    got = _gather(table, [1, 2, 3], buckets, UploadWindow(now - 60, now + 60))
    assert set(got.valid) == {1, 2} and got.invalid == {3}
    assert got.failed[3].startswith("invalid:") and "overflows" in got.failed[3]
    for rule in ("median_clip", "mean"):
        want = flatten(aggregate([got.valid[1], got.valid[2]], SHAPES, rule=rule))
        with_bad = flatten(aggregate([got.valid[1], bad, got.valid[2]], SHAPES, rule=rule))
        for name in SHAPES:
            w, g = np.asarray(want[name]), np.asarray(with_bad[name])
            np.testing.assert_array_equal(g.view(np.int32), w.view(np.int32))
            assert np.count_nonzero(w) > 0


def test_a_spooled_payload_closes_its_map_after_each_read(tmp_path, table, monkeypatch):
    """Each tensor read maps the file and closes the map (and its file descriptor) before it
    returns, rather than leaving that to garbage collection."""
    import mmap

    from templar_jax.neurons import spool as spool_module

    maps = []

    class Recorded(mmap.mmap):
        def __init__(self, *args, **kwargs):
            maps.append(self)

    monkeypatch.setattr(spool_module.mmap, "mmap", Recorded)
    payload, data = _payload_bytes(table, 1)
    codec = PayloadCodec(table, chunk=64, topk=64, index_coding="elias-fano")
    spooled = PayloadSpool(tmp_path / "spool", codec).put(WINDOW, 1, data, tuple(payload))
    for name, tp in payload.items():
        np.testing.assert_array_equal(np.asarray(spooled[name].idx), np.asarray(tp.idx))
    assert len(maps) == len(SHAPES)
    for m in maps:
        with pytest.raises(ValueError):  # closed
            len(m)


def test_a_payload_the_spool_cannot_write_fails_the_gather_rather_than_the_peer(tmp_path, table):
    """A full or broken local disk is the validator's failure: counting the peer as missing
    (the gather's catch-all for a consumer's error) would slash an honest miner for it."""
    now = time.time()
    buckets = {uid: _upload(tmp_path, uid, _payload_bytes(table, uid)[1]) for uid in (1, 2)}
    codec = PayloadCodec(table, chunk=64, topk=64, index_coding="elias-fano")

    class FullDisk(PayloadSpool):
        def put(self, window, uid, data, names):
            if uid == 2:
                raise OSError(28, "No space left on device")
            return super().put(window, uid, data, names)

    with pytest.raises(OSError, match="No space left"):
        gather_window(WINDOW, [1, 2], buckets, upload=UploadWindow(now - 60, now + 60), version=VERSION,
                      codec=codec, deadline_s=10.0, spool=FullDisk(tmp_path / "spool", codec), in_flight=1)
