"""Stale copies: a payload that repeats an earlier window's update (a replay of one's own old
payload, the previous aggregate re-uploaded) gets the copy penalties; fresh payloads do not."""

import numpy as np
import pytest

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.copy_detect import apply_copy_verdicts
from templar_jax.gauntlet.errors import ConfigError
from templar_jax.gauntlet.stale_copy import (
    AGGREGATE_SOURCE,
    detect_stale_copies,
    remember,
    remember_updates,
    sampled_overlap,
)
from templar_jax.gauntlet.state import ValidatorState
from templar_jax.sparseloco.payload import TensorPayload

CFG = GauntletConfig()
SHAPES = {"w": (2, 300, 64), "v": (40, 64)}  # [*batch, chunks, k]


def payload(rng, chunk=4096):
    out = {}
    for name, shape in SHAPES.items():
        rows = [np.sort(rng.choice(chunk, size=shape[-1], replace=False)) for _ in range(int(np.prod(shape[:-1])))]
        idx = np.stack(rows).reshape(shape).astype(np.int32)
        out[name] = TensorPayload(idx, np.zeros_like(idx, np.uint8), 0.0, 1.0, np.zeros(4, np.float32))
    return out


def moved(p, rng, fraction, chunk=4096):
    """`p` with `fraction` of each chunk's indices replaced by unused ones."""
    out = {}
    for name, tp in p.items():
        idx = tp.idx.reshape(-1, tp.idx.shape[-1]).copy()
        for row in idx:
            n = int(len(row) * fraction)
            free = np.setdiff1d(np.arange(chunk), row)
            row[rng.choice(len(row), n, replace=False)] = rng.choice(free, n, replace=False)
            row.sort()
        out[name] = tp._replace(idx=idx.reshape(tp.idx.shape))
    return out


def test_replay_and_reuploaded_aggregate_are_banned_fresh_payloads_are_not():
    rng = np.random.default_rng(0)
    before = {1: payload(rng), 2: payload(rng), 3: payload(rng), AGGREGATE_SOURCE: payload(rng)}
    earlier = remember_updates(7, before, CFG, seed=1234)
    now = {1: payload(rng), 2: payload(rng),
           3: before[3],  # its own payload of the previous window again
           4: moved(before[AGGREGATE_SOURCE], rng, 1 / 8),  # the previous aggregate, a little changed
           5: moved(before[2], rng, 0.45)}  # another peer's old payload, half of it moved
    verdicts = {v.uid: v for v in detect_stale_copies(now, [earlier], CFG)}
    assert set(verdicts) == {3, 4, 5}
    assert (verdicts[3].source_uid, verdicts[3].action, verdicts[3].overlap) == (3, "ban", 1.0)
    assert (verdicts[4].source_uid, verdicts[4].action) == (AGGREGATE_SOURCE, "ban")
    assert (verdicts[5].source_uid, verdicts[5].action) == (2, "reset")
    state = apply_copy_verdicts(ValidatorState(), verdicts.values(), 8, CFG)
    assert state.peer(3, CFG).is_banned(8 + CFG.copy_ban_windows) and not state.peer(5, CFG).is_banned(9)


def test_remembered_rows_are_bounded_seeded_and_match_the_full_overlap_on_copies():
    rng = np.random.default_rng(1)
    p = payload(rng)
    cfg = GauntletConfig(stale_copy_chunks=16)
    a = remember_updates(3, {1: p}, cfg, seed=5)
    b = remember_updates(3, {1: p}, cfg, seed=6)
    assert {n: r.shape for n, r in a.indices[1].items()} == {"w": (16, 64), "v": (16, 64)}
    assert any(not np.array_equal(a.rows[n], b.rows[n]) for n in SHAPES)  # the seed picks the chunks
    assert sampled_overlap(a.indices[1], a.indices[1]) == 1.0
    assert remember_updates(3, {1: p}, GauntletConfig(stale_copy_chunks=0), seed=5) is None
    assert detect_stale_copies({1: p}, [], CFG) == []
    assert detect_stale_copies({1: p}, [a], GauntletConfig(stale_copy_chunks=0)) == []
    with pytest.raises(ConfigError):
        GauntletConfig(stale_copy_chunks=-1)


def test_the_last_stale_copy_windows_are_remembered():
    rng = np.random.default_rng(2)
    old, mid, new = payload(rng), payload(rng), payload(rng)
    history = ()
    for window, p in ((5, old), (6, mid), (7, new)):
        history = remember(history, window, {1: p}, CFG, seed=window)
    assert [e.window for e in history] == [6, 7]  # stale_copy_windows = 2
    assert {v.uid for v in detect_stale_copies({2: mid, 3: new, 4: old}, history, CFG)} == {2, 3}
    assert remember(history, 8, {}, CFG, seed=8) == history  # nothing published: nothing added
    assert remember(history, 8, {1: old}, GauntletConfig(stale_copy_windows=0), seed=8) == ()


def test_the_aggregates_indices_come_from_its_top_k_at_the_remembered_chunks_only():
    """The validator selects the applied aggregate's top-k only in the sampled chunks
    (`topk_rows`), equal to what a free rider compressing the whole aggregate sends there."""
    from templar_jax.sparseloco import compress_dense, compress_tensor, topk_rows, topk_rows_of

    rng = np.random.default_rng(3)
    dense = {"w": rng.standard_normal((2, 128, 384)).astype(np.float32),
             "v": rng.standard_normal((4096, 128)).astype(np.float32), "n": np.ones(128, np.float32)}
    batch_dims = {"w": 1, "v": 0, "n": 0}
    for name, x in dense.items():
        full = np.asarray(compress_tensor(x, topk=64, chunk=64, batch_ndim=batch_dims[name]).idx)
        flat = full.reshape(-1, full.shape[-1])
        rows = np.sort(rng.choice(len(flat), size=min(len(flat), 5), replace=False))
        np.testing.assert_array_equal(topk_rows(x, rows, topk=64, chunk=64, batch_ndim=batch_dims[name]), flat[rows])
    rider = compress_dense(dense, topk=64, chunk=64, batch_dims=batch_dims)
    honest = compress_dense({n: rng.standard_normal(x.shape).astype(np.float32) for n, x in dense.items()},
                            topk=64, chunk=64, batch_dims=batch_dims)  # another peer's payload of that window
    cfg = GauntletConfig(stale_copy_chunks=8)
    history = remember((), 4, {1: honest}, cfg, seed=9, aggregate_rows=lambda rows: topk_rows_of(
        dense, rows, topk=64, chunk=64, batch_dims=batch_dims))
    assert set(history[0].indices) == {1, AGGREGATE_SOURCE}
    (verdict,) = detect_stale_copies({7: rider}, history, cfg)
    assert (verdict.uid, verdict.source_uid, verdict.action, verdict.overlap) == (7, AGGREGATE_SOURCE, "ban", 1.0)


class CountingPayload(dict):
    """A payload that counts reads of each tensor (a spooled payload decodes on every read)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.reads: dict[str, int] = {}

    def __getitem__(self, name):
        self.reads[name] = self.reads.get(name, 0) + 1
        return super().__getitem__(name)


def test_each_tensor_of_a_payload_is_read_once_whatever_the_number_of_earlier_updates():
    """The check used to read every tensor once per earlier update (windows x sources): with
    spooled payloads that was a full decode per earlier peer, quadratic in the miners."""
    rng = np.random.default_rng(4)
    history = ()
    for window in (5, 6):
        history = remember(history, window, {u: payload(rng) for u in (1, 2, 3)}, CFG, seed=window)
    a, b = CountingPayload(payload(rng)), CountingPayload(payload(rng))
    assert sum(len(e.indices) for e in history) == 6  # six earlier updates to compare with
    plain = detect_stale_copies({8: dict(a), 9: dict(b)}, history, CFG)
    assert detect_stale_copies({8: a, 9: b}, history, CFG) == plain
    assert a.reads == b.reads == {n: 1 for n in SHAPES}
