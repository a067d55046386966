"""Copy detection: per-chunk overlap against a set-based reference, thresholds, later uploader."""

import numpy as np
import pytest

from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.copy_detect import (
    CopyVerdict,
    apply_copy_verdicts,
    chunk_overlap,
    copy_verdicts,
    detect_copies,
    detect_copies_sketched,
    index_sketch,
    pairwise_overlaps,
    payload_overlap,
    sampled_rows,
    sketch_overlaps,
)
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.gauntlet.state import PeerRecord, ValidatorState
from templar_jax.sparseloco.payload import TensorPayload

CFG = GauntletConfig()


def random_idx(rng, shape, chunk=4096):
    *lead, k = shape
    rows = [np.sort(rng.choice(chunk, size=k, replace=False)) for _ in range(int(np.prod(lead)))]
    return np.stack(rows).reshape(shape).astype(np.int32)


def tp(idx):
    return TensorPayload(idx=idx, codes=np.zeros_like(idx, np.uint8), shift=0.0, scale=1.0,
                         lut=np.zeros(4, np.float32))


def test_chunk_overlap_matches_set_reference():
    rng = np.random.default_rng(0)
    a = random_idx(rng, (3, 5, 64), chunk=128)  # small chunk -> many shared indices
    b = random_idx(rng, (3, 5, 64), chunk=128)
    got = chunk_overlap(a, b)
    want = np.array([[len(set(a[i, c]) & set(b[i, c])) / 64 for c in range(5)] for i in range(3)])
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want)
    assert 0.2 < got.mean() < 0.8
    np.testing.assert_array_equal(chunk_overlap(a, a), np.ones((3, 5)))
    np.testing.assert_array_equal(chunk_overlap(np.zeros((2, 4), int) + [0, 1, 2, 3],
                                                np.zeros((2, 4), int) + [4, 5, 6, 7]), 0.0)
    with pytest.raises(ScoreInputError):
        chunk_overlap(a, b[..., :32])


def test_duplicates_cannot_frame_another_peer():
    cheat = np.array([[5, 5, 5, 5]])  # malformed: one index repeated
    honest = np.array([[1, 2, 3, 5]])
    assert chunk_overlap(cheat, honest)[0] == pytest.approx(0.25)
    assert chunk_overlap(cheat, np.array([[1, 2, 3, 4]]))[0] == 0.0
    assert chunk_overlap(np.array([[-1, -2, 7, 8]]), np.array([[-1, -2, 7, 9]]))[0] == 0.25


def test_payload_overlap_averages_tensors_equally():
    rng = np.random.default_rng(1)
    big_a = random_idx(rng, (40, 64))
    small_a = random_idx(rng, (1, 64))
    a = {"big": tp(big_a), "small": tp(small_a), "only_a": tp(small_a)}
    b = {"big": tp(big_a.copy()), "small": tp(np.arange(4000, 4064)[None].astype(np.int32))}
    small_ov = chunk_overlap(small_a, b["small"].idx).mean()
    assert payload_overlap(a, b) == pytest.approx((1.0 + small_ov) / 2)
    assert payload_overlap(a, b, names=["big"]) == 1.0
    assert payload_overlap(a, {"other": tp(small_a)}) == 0.0


def test_verdicts_thresholds_later_uploader_and_ties():
    overlaps = {(1, 2): 0.39, (1, 3): 0.4, (1, 4): 0.55, (2, 5): 0.6, (3, 6): 0.7, (4, 6): 0.45}
    times = {1: 10.0, 2: 20.0, 3: 30.0, 4: 5.0, 5: 1.0, 6: 30.0}
    verdicts = copy_verdicts(overlaps, times, CFG)
    assert verdicts == [
        CopyVerdict(uid=1, source_uid=4, overlap=0.55, action="reset"),  # 1 uploaded after 4
        CopyVerdict(uid=2, source_uid=5, overlap=0.6, action="ban"),
        CopyVerdict(uid=3, source_uid=6, overlap=0.7, action="ban"),  # tie at t=30: both
        CopyVerdict(uid=6, source_uid=3, overlap=0.7, action="ban"),
    ]
    assert copy_verdicts({(1, 3): 0.4}, times, CFG) == [CopyVerdict(3, 1, 0.4, "halve")]
    with pytest.raises(ScoreInputError, match="upload time"):
        copy_verdicts({(1, 9): 0.9}, times, CFG)


def test_detect_copies_end_to_end_on_payloads():
    rng = np.random.default_rng(2)
    src = random_idx(rng, (2, 6, 64))
    partial = src.copy()
    partial[..., 32:] = random_idx(rng, (2, 6, 32), chunk=4096)  # ~half copied
    partial = np.sort(partial, -1)
    payloads = {0: {"w": tp(src)}, 1: {"w": tp(src.copy())}, 2: {"w": tp(random_idx(rng, (2, 6, 64)))},
                3: {"w": tp(partial)}}
    ov = pairwise_overlaps(payloads)
    assert ov[(0, 1)] == 1.0 and ov[(0, 2)] < 0.1 and 0.5 <= ov[(0, 3)] < 0.55
    verdicts = detect_copies(payloads, {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}, CFG)
    assert [(v.uid, v.source_uid, v.action) for v in verdicts] == [(1, 0, "ban"), (3, 0, "reset")]
    # Whoever uploads later is penalized: now 0 comes last, and 3 copied 1 (a copy of 0).
    flipped = detect_copies(payloads, {0: 9.0, 1: 2.0, 2: 3.0, 3: 4.0}, CFG)
    assert [(v.uid, v.source_uid, v.action) for v in flipped] == [(0, 1, "ban"), (3, 1, "reset")]


def test_pairwise_overlaps_equal_payload_overlap_per_pair_reading_each_tensor_once():
    """Tensor-major pairwise_overlaps == payload_overlap of each pair, bit for bit, with tensors
    some peers lack, a malformed payload (duplicates, negatives) and a names filter; each peer's
    tensor is read once (what keeps a spooled validator's memory to one tensor per peer)."""
    rng = np.random.default_rng(5)
    base = {"a": random_idx(rng, (3, 7, 64)), "b": random_idx(rng, (5, 64)), "c": random_idx(rng, (2, 64))}
    payloads = {u: {n: tp(random_idx(rng, x.shape)) for n, x in base.items()} for u in range(4)}
    payloads[4] = {n: tp(x.copy()) for n, x in base.items()}
    payloads[5] = {"a": tp(base["a"].copy()), "b": tp(np.sort(payloads[1]["b"].idx, -1))}  # lacks c
    bad = base["b"].copy()
    bad[:, :5] = -3
    bad[:, 10:20] = bad[:, 20:30]
    payloads[6] = {"b": tp(bad), "c": tp(base["c"].copy())}
    payloads[7] = {n: tp(x.copy()) for n, x in base.items()}  # with 4: a full copy

    class Counting(dict):
        reads = 0

        def __getitem__(self, name):
            Counting.reads += 1
            return dict.__getitem__(self, name)

    counted = {u: Counting(p) for u, p in payloads.items()}
    for names in (None, ["b", "c"], ["zzz"]):
        Counting.reads = 0
        got = pairwise_overlaps(counted, names)
        assert Counting.reads <= sum(len(p) for p in payloads.values())
        assert list(got) == [(a, b) for a in range(8) for b in range(a + 1, 8)]
        for (a, b), ov in got.items():
            assert ov == payload_overlap(payloads[a], payloads[b], names), (a, b, names)
    assert pairwise_overlaps(payloads)[(4, 7)] == 1.0 and pairwise_overlaps({}) == {}


def test_sketches_of_small_tensors_are_exact_and_flag_the_same_copiers():
    """Tensors with no more rows than the sketch keeps: the sketch is the whole index set, so
    its overlaps equal pairwise_overlaps and the verdicts equal detect_copies' (the fixture of
    test_detect_copies_end_to_end_on_payloads)."""
    rng = np.random.default_rng(2)
    src = random_idx(rng, (2, 6, 64))
    partial = src.copy()
    partial[..., 32:] = random_idx(rng, (2, 6, 32), chunk=4096)
    payloads = {0: {"w": tp(src)}, 1: {"w": tp(src.copy())}, 2: {"w": tp(random_idx(rng, (2, 6, 64)))},
                3: {"w": tp(np.sort(partial, -1))}}
    sketches = {u: index_sketch(p, 12, seed=7) for u, p in payloads.items()}
    assert sketch_overlaps(sketches) == pairwise_overlaps(payloads)
    times = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    assert detect_copies_sketched(sketches, times, CFG) == detect_copies(payloads, times, CFG)


def test_sketches_of_large_tensors_flag_the_same_copiers_as_full_comparison():
    """2,300 chunk rows per peer, 128 sampled: a full copy, a ~70 % and a ~45 % partial copy and
    honest peers get the verdicts (uid, source, action) of the full comparison; the sampled rows
    depend on the seed and the tensor, never on the peer."""
    rng = np.random.default_rng(11)
    shapes = {"layers/w": (4, 500, 64), "embed": (300, 64)}
    src = {n: random_idx(rng, s) for n, s in shapes.items()}

    def partial(share):
        out = {}
        for n, idx in src.items():
            fresh = random_idx(rng, idx.shape)
            keep = rng.random(idx.shape[:-1] + (1,)) < share + rng.normal(0, 0.1, idx.shape[:-1] + (1,))
            mixed = np.where(keep & (np.arange(64) < 48), idx, fresh)  # fresh draws rarely collide
            out[n] = tp(np.sort(mixed, -1))
        return out

    payloads = {1: {n: tp(x) for n, x in src.items()}, 2: {n: tp(random_idx(rng, s)) for n, s in shapes.items()},
                3: {n: tp(x.copy()) for n, x in src.items()}, 4: partial(0.95), 5: partial(0.62),
                6: {n: tp(random_idx(rng, s)) for n, s in shapes.items()}}
    times = {u: float(u) for u in payloads}
    exact = detect_copies(payloads, times, CFG)
    assert [(v.uid, v.source_uid, v.action) for v in exact] == [(3, 1, "ban"), (4, 1, "ban"), (5, 1, "halve")]
    for seed in (0, 1, 2):
        sketches = {u: index_sketch(p, 128, seed) for u, p in payloads.items()}
        assert all(s["layers/w"].shape == (128, 64) and s["embed"].shape == (128, 64) for s in sketches.values())
        got = detect_copies_sketched(sketches, times, CFG)
        assert [(v.uid, v.source_uid, v.action) for v in got] == [(v.uid, v.source_uid, v.action) for v in exact]
        full = pairwise_overlaps(payloads)
        for pair, ov in sketch_overlaps(sketches).items():
            assert abs(ov - full[pair]) < 0.05, (pair, ov, full[pair])
    np.testing.assert_array_equal(sampled_rows(2000, 128, 5, "layers/w"), sampled_rows(2000, 128, 5, "layers/w"))
    assert not np.array_equal(sampled_rows(2000, 128, 5, "layers/w"), sampled_rows(2000, 128, 6, "layers/w"))
    with pytest.raises(ScoreInputError, match="chunks >= 1"):
        index_sketch(payloads[1], 0, seed=0)


def test_apply_verdicts_halve_reset_ban():
    rec = PeerRecord(mu=31.0, sigma=3.0, bma=0.5, eval_count=20, final_score=4.0, last_eval_window=7)
    state = ValidatorState(peers={1: rec, 2: rec, 3: rec})
    verdicts = [CopyVerdict(1, 9, 0.45, "halve"), CopyVerdict(2, 9, 0.5, "reset"),
                CopyVerdict(3, 9, 0.65, "ban")]
    out = apply_copy_verdicts(state, verdicts, window=100, cfg=CFG)
    assert out.peers[1].final_score == 2.0 and out.peers[1].mu == 31.0
    fresh = PeerRecord.initial(CFG)
    for uid in (2, 3):
        r = out.peers[uid]
        assert (r.mu, r.sigma, r.bma, r.eval_count, r.final_score) == (
            fresh.mu, fresh.sigma, 0.0, 0, 0.0)
        assert r.last_eval_window == 7
    assert out.peers[2].banned_until == -1
    assert out.peers[3].banned_until == 121
    assert out.peers[3].is_banned(100) and out.peers[3].is_banned(120)
    assert not out.peers[3].is_banned(121)
    assert state.peers[1].final_score == 4.0  # input state untouched
