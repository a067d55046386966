"""SPEC 2.4 aggregation, densify, norms and the outer step against the NumPy reference."""

import jax.numpy as jnp
import numpy as np
import pytest

from sparseloco_reference import ref_aggregate
from templar_jax.sparseloco import (
    AggregationError, aggregate, aggregate_tensor, compress_tensor, decompress_tensor, densify,
    median_norms, outer_step, payload_norms)

SHAPE = (128, 192)


def decoded(p):
    return np.asarray(p.lut)[np.asarray(p.codes)] + np.asarray(p.shift)


def layer(p, i):
    """The i-th reference tensor of a stacked payload, as its own payload."""
    return p._replace(**{f: np.asarray(getattr(p, f))[i] for f in p._fields})


def peer_payloads(n_peers, shape=SHAPE, seed=0):
    """Correlated peers (shared signal + own noise, different scales) so indices overlap a lot."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(shape).astype(np.float32) * 3
    return [compress_tensor(((common + rng.standard_normal(shape)) * (0.5 + i)).astype(np.float32))
            for i in range(n_peers)]


@pytest.mark.parametrize("n_peers", [1, 2, 3, 20])
@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_aggregate_matches_reference(n_peers, rule):
    payloads = peer_payloads(n_peers, seed=n_peers)
    if n_peers > 1:  # the peers really do overlap, so the per-coordinate mean is exercised
        a, b = np.asarray(payloads[0].idx), np.asarray(payloads[1].idx)
        overlap = np.mean([len(np.intersect1d(a[c], b[c])) / a.shape[1] for c in range(a.shape[0])])
        assert overlap > 0.3
    got = np.asarray(aggregate_tensor(payloads, SHAPE, rule=rule))
    want = ref_aggregate([(np.asarray(p.idx), decoded(p)) for p in payloads], SHAPE, rule)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("shape", [(50, 97), (2816,)])
def test_aggregate_odd_shapes(shape):
    payloads = peer_payloads(3, shape, seed=7)
    got = np.asarray(aggregate_tensor(payloads, shape))
    want = ref_aggregate([(np.asarray(p.idx), decoded(p)) for p in payloads], shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_non_finite_peer_is_dropped_from_only_that_layer():
    """A peer whose layer 0 decodes to NaN is dropped there (layer 0 is the good peer's alone),
    and still counts in layer 1; when no peer is left in a layer, the "mean" rule's 0/0 makes
    that layer non-finite and it is skipped (zeroed)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 64, 128)).astype(np.float32)
    good = compress_tensor(x, batch_ndim=1)
    bad = compress_tensor(x * 2, batch_ndim=1)
    bad = bad._replace(shift=np.array([np.nan, 0.0], np.float32))  # layer 0 poisoned
    out = np.asarray(aggregate_tensor([good, bad], x.shape, batch_ndim=1))
    alone = np.asarray(aggregate_tensor([good], x.shape, batch_ndim=1))
    np.testing.assert_array_equal(out[0].view(np.int32), alone[0].view(np.int32))
    assert np.all(np.isfinite(out[1])) and np.any(out[1] != 0)
    assert not np.array_equal(out[1], alone[1]), "the bad peer's good layer still counts"
    out = np.asarray(aggregate_tensor([bad, bad], x.shape, batch_ndim=1, rule="mean"))
    assert np.all(out[0] == 0)
    assert np.all(np.isfinite(out[1])) and np.any(out[1] != 0)


def test_unknown_rule_and_empty_are_typed_errors():
    with pytest.raises(AggregationError, match="rule"):
        aggregate_tensor(peer_payloads(1), SHAPE, rule="sum")
    with pytest.raises(AggregationError):
        aggregate_tensor([], SHAPE)


def test_tree_api_norms_densify_and_outer_step():
    rng = np.random.default_rng(9)
    params = {"layers": {"w": rng.standard_normal((2, 64, 128)).astype(np.float32)},
              "final_norm": {"scale": np.ones(64, np.float32)}}
    payloads = []
    for i in range(3):
        w = rng.standard_normal((2, 64, 128)).astype(np.float32) * (i + 1)
        payloads.append({"layers/w": compress_tensor(w, batch_ndim=1),
                         "final_norm/scale": compress_tensor(rng.standard_normal(64).astype(np.float32))})
    agg = aggregate(payloads, params)
    np.testing.assert_allclose(
        np.asarray(agg["layers"]["w"][1]),
        np.asarray(aggregate_tensor([layer(p["layers/w"], 1) for p in payloads], (64, 128))),
        rtol=1e-6, atol=1e-7)
    norms = payload_norms(payloads[2])
    want = [np.linalg.norm(decoded(layer(payloads[2]["layers/w"], i))) for i in range(2)]
    np.testing.assert_allclose(np.asarray(norms["layers/w"]), want, rtol=1e-5)
    med = median_norms(payloads)
    assert med["layers/w"].shape == (2,)
    # Densify the largest peer clipped to the median norm: its norm becomes the median.
    dense = densify(payloads[2], params, clip_norm=med)
    dense_norms = np.linalg.norm(np.asarray(dense["layers"]["w"]).reshape(2, -1), axis=1)
    np.testing.assert_allclose(dense_norms, np.asarray(med["layers/w"]), rtol=1e-5)
    unclipped = densify(payloads[2], params)
    np.testing.assert_allclose(np.asarray(unclipped["final_norm"]["scale"]),
                               np.asarray(decompress_tensor(payloads[2]["final_norm/scale"], (64,))))
    new = outer_step(params, agg, alpha=0.4)
    want_w = params["layers"]["w"] - 0.4 * np.asarray(agg["layers"]["w"])
    np.testing.assert_allclose(np.asarray(new["layers"]["w"]), want_w, rtol=1e-6, atol=1e-6)
    assert new["final_norm"]["scale"].dtype == jnp.float32
    with pytest.raises(AggregationError, match="lack"):
        aggregate([payloads[0], {"layers/w": payloads[1]["layers/w"]}], params)


@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_ordered_peer_sums_equal_the_one_scatter_path_bitwise(rule):
    """`ordered=True` (one unique-index scatter per peer, stopping at the last valid peer) gives
    the default path's bits on CPU, with padding peers after and an invalid peer among them."""
    from templar_jax.sparseloco.aggregate import aggregate_stacked
    from templar_jax.sparseloco.payload import peer_bucket, stack_payloads

    payloads = peer_payloads(5, seed=9)
    stacked = stack_payloads(payloads, pad_to=peer_bucket(5))  # 8 slots: 5 peers + 3 zero payloads
    valid = np.arange(8) < 5
    valid[2] = False  # an invalid peer before valid ones: dropped in both paths
    kw = dict(shape=SHAPE, batch_ndim=0, chunk=64, rule=rule)
    want = np.asarray(aggregate_stacked(stacked, valid, **kw))
    got = np.asarray(aggregate_stacked(stacked, valid, ordered=True, **kw))
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    assert np.count_nonzero(got) > 0


PATHS = ["one_scatter", "ordered", "onehot_kernel", "scatter_kernel"]


def aggregate_on_path(stacked, valid, path, **kw):
    """`aggregate_stacked` on one path of PATHS: the pure core with one scatter or in peer
    order, or a Pallas aggregation kernel (interpret mode)."""
    from templar_jax.sparseloco import KernelConfig
    from templar_jax.sparseloco.aggregate import aggregate_stacked

    if path.endswith("kernel"):
        kernel = KernelConfig(backend="interpret", aggregate=path.split("_")[0], aggregate_tiles=1)
        return np.asarray(aggregate_stacked(stacked, valid, impl="pallas", kernel=kernel, **kw))
    return np.asarray(aggregate_stacked(stacked, valid, ordered=path == "ordered", **kw))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_invalid_and_padding_peers_never_reach_the_result(rule, path):
    """Peers marked invalid (and the padding slots) are dropped from every scatter, whatever
    they hold: an invalid peer whose table decodes to NaN leaves the result bit-identical to
    aggregating the valid peers alone (multiplying it by 0 would have made NaN). The same for
    the Pallas kernels (interpret mode)."""
    from templar_jax.sparseloco.payload import peer_bucket, stack_payloads

    def run(st, v):
        return aggregate_on_path(st, v, path, shape=SHAPE, batch_ndim=0, chunk=64, rule=rule)

    payloads = peer_payloads(4, seed=11)
    poisoned = payloads[1]._replace(lut=np.full_like(np.asarray(payloads[1].lut), np.nan))
    with_bad = [payloads[0], poisoned, payloads[2], payloads[3]]
    stacked = stack_payloads(with_bad, pad_to=peer_bucket(7))  # 8 slots: 4 peers + 4 zero payloads
    valid = np.arange(8) < 4
    valid[1] = False
    got = run(stacked, valid)
    good = [payloads[0], payloads[2], payloads[3]]
    want = run(stack_payloads(good, pad_to=4), np.arange(4) < 3)
    assert np.all(np.isfinite(got)) and np.count_nonzero(got) > 0
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))


def _hostile(p, kind):
    """A real payload made hostile: every value decodes to inf ("inf"), or to a finite 1e30
    whose squares sum past float32 ("norm", an infinite clip norm)."""
    from templar_jax.wire.synthetic import overflowing

    if kind == "inf":
        return overflowing(p)
    return p._replace(shift=np.full_like(np.asarray(p.shift), 1e30),
                      lut=np.zeros_like(np.asarray(p.lut)))


@pytest.mark.parametrize("kind", ["inf", "norm"])
@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("rule", ["median_clip", "mean"])
def test_overflow_peer_leaves_the_honest_aggregate_bit_identical(rule, path, kind):
    """Issue 22: one peer whose side values are finite but whose values (or norm) overflow used
    to make its clip factor 0, inf * 0 = NaN, and so skip the tensor for every peer. The core now
    drops that peer: the honest peers' aggregate is bit-identical with and without it, on the
    pure path and both Pallas kernels (interpret mode)."""
    from templar_jax.sparseloco.payload import stack_peers

    def run(peers):
        return aggregate_on_path(*stack_peers(peers), path, shape=shape, batch_ndim=1, chunk=64,
                                 rule=rule)

    shape = (2, 64, 128)  # 2 layers of 2 tiles: small, since the kernels run interpreted
    rng = np.random.default_rng(12)
    common = rng.standard_normal(shape).astype(np.float32)
    honest = [compress_tensor(common + rng.standard_normal(shape).astype(np.float32) * (i + 1),
                              batch_ndim=1) for i in range(3)]
    bad = _hostile(honest[0], kind)
    assert np.isfinite(bad.shift).all() and np.isfinite(bad.lut).all()
    want = run(honest)
    got = run([honest[0], bad, honest[1], honest[2]])
    assert np.all(np.isfinite(got)) and np.count_nonzero(got[0]) > 0 and np.count_nonzero(got[1]) > 0
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
