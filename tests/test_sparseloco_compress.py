"""Compression (SPEC 2.2-2.3) and error feedback against the independent NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparseloco_reference import ref_compress, ref_decompress
from templar_jax.sparseloco import (
    SparseLoCoState, compress_tensor, decompress_tensor, null_payload, sparseloco)

SHAPES = [(128, 256), (50, 97), (97,), (2816,), (192, 2816), (64,), (130, 64)]


def assert_matches_reference(p, x, batch_index=None):
    """Selections exact; codes exact except where the float64 pre-round value sits within 1e-4
    of a rounding boundary; decoded values within float32 summation noise."""
    sel = (lambda a: np.asarray(a)) if batch_index is None else (lambda a: np.asarray(a)[batch_index])
    ref = ref_compress(x)
    np.testing.assert_array_equal(sel(p.idx), ref["idx"])
    codes = sel(p.codes)
    near_boundary = np.abs(np.abs(ref["pre"] - np.floor(ref["pre"])) - 0.5) < 1e-4
    assert np.all((codes == ref["codes"]) | near_boundary)
    decoded = sel(p.lut)[codes] + sel(p.shift)
    scale = np.abs(ref["values"]).max() or 1.0
    same = codes == ref["codes"]
    np.testing.assert_allclose(decoded[same], ref["values"][same], rtol=1e-5, atol=1e-5 * scale)
    np.testing.assert_allclose(sel(p.scale), ref["scale"], rtol=1e-5)
    return ref


@pytest.mark.parametrize("shape", SHAPES)
def test_compress_matches_reference(shape):
    x = np.random.default_rng(hash(shape) % 2**32).standard_normal(shape).astype(np.float32)
    p = compress_tensor(x)
    assert p.idx.dtype == jnp.int32 and p.codes.dtype == jnp.uint8
    assert np.all(np.diff(np.asarray(p.idx), axis=-1) > 0), "indices sorted ascending per chunk"
    ref = assert_matches_reference(p, x)
    dense = np.asarray(decompress_tensor(p, shape))
    expect = ref_decompress(ref["idx"], np.asarray(p.lut)[np.asarray(p.codes)] + np.asarray(p.shift), shape)
    np.testing.assert_array_equal(dense, expect.astype(np.float32))


def test_ties_lower_index_wins_and_zeros():
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, size=(128, 192)).astype(np.float32)  # heavy ties, +-, zeros, -0.0
    x[x == 0] = -0.0
    x[:64, :64] = 0.0  # an all-zero chunk: first 64 indices
    p = compress_tensor(x)
    assert_matches_reference(p, x)
    np.testing.assert_array_equal(np.asarray(p.idx)[0], np.arange(64))


def test_degenerate_quantizer_falls_back_to_scale_one():
    x = np.full((64, 64), 3.0, np.float32)  # all selected values equal: std 0 -> scale 1
    p = compress_tensor(x)
    assert float(p.scale) == 1.0
    np.testing.assert_allclose(np.asarray(decompress_tensor(p, x.shape))[0, :64], 3.0)
    one = compress_tensor(np.array([5.0], np.float32))  # numel 1: std is 0/0 -> scale 1
    assert float(one.scale) == 1.0
    np.testing.assert_allclose(np.asarray(decompress_tensor(one, (1,))), [5.0])


def test_stacked_layers_have_per_layer_statistics():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 64, 128)).astype(np.float32) * np.array([1, 10, 100])[:, None, None]
    p = compress_tensor(x, batch_ndim=1)
    assert p.idx.shape == (3, 2, 64) and p.lut.shape == (3, 4) and p.shift.shape == (3,)
    for i in range(3):
        assert_matches_reference(p, x[i], batch_index=i)
    dense = np.asarray(decompress_tensor(p, x.shape, batch_ndim=1))
    np.testing.assert_array_equal(dense[1], np.asarray(decompress_tensor(
        compress_tensor(x[1]), x.shape[1:])))


@pytest.fixture(scope="module")
def small_tree():
    rng = np.random.default_rng(3)
    return {"embed": {"embedding": rng.standard_normal((128, 64)).astype(np.float32)},
            "layers": {"w": rng.standard_normal((2, 64, 192)).astype(np.float32),
                       "norm": {"scale": rng.standard_normal((2, 64)).astype(np.float32)}},
            "final_norm": {"scale": rng.standard_normal((50,)).astype(np.float32)}}


def test_error_feedback_conservation_and_type_stability(small_tree):
    tx = sparseloco(beta=0.95)
    state = tx.init(small_tree)
    assert isinstance(state, SparseLoCoState)
    rng = np.random.default_rng(4)
    for step in range(3):
        delta = jax.tree.map(
            lambda a: rng.standard_normal(a.shape).astype(np.float32), small_tree)
        e_before = state.error
        payload, state = tx.update(delta, state)
        assert sorted(payload) == ["embed/embedding", "final_norm/scale", "layers/norm/scale", "layers/w"]
        assert payload["layers/w"].idx.shape == (2, 3, 64)
        for name, arr in [("layers/w", lambda t: t["layers"]["w"]),
                          ("embed/embedding", lambda t: t["embed"]["embedding"]),
                          ("final_norm/scale", lambda t: t["final_norm"]["scale"])]:
            bd = int(name.startswith("layers/"))
            sent = np.asarray(decompress_tensor(payload[name], arr(small_tree).shape, batch_ndim=bd))
            expect = 0.95 * np.asarray(arr(e_before)) + arr(delta)
            np.testing.assert_allclose(sent + np.asarray(arr(state.error)), expect,
                                       rtol=1e-6, atol=1e-6 * np.abs(expect).max())
            assert arr(state.error).dtype == np.float32 and arr(state.error).shape == arr(small_tree).shape
        if step == 0:  # first step: e = delta, so the payload is exactly compress(delta)
            assert_matches_reference(payload["embed/embedding"], delta["embed"]["embedding"])


def test_null_round_sends_zeros_and_resets_error(small_tree):
    tx = sparseloco()
    state = tx.init(small_tree)
    _, state = tx.update(small_tree, state)
    assert float(jnp.abs(state.error["layers"]["w"]).sum()) > 0
    payload, state = tx.update(small_tree, state, null_round=True)
    for leaf in jax.tree.leaves(state.error):
        assert not np.any(np.asarray(leaf))
    w = payload["layers/w"]
    assert w.idx.shape == (2, 3, 64) and np.all(np.diff(w.idx, axis=-1) > 0)
    assert not np.any(np.asarray(decompress_tensor(w, (2, 64, 192), batch_ndim=1)))
    np.testing.assert_array_equal(null_payload((2, 64, 192), 1).lut, np.zeros((2, 4)))


def test_numpy_payload_from_the_wire_decodes():
    x = np.random.default_rng(5).standard_normal((64, 128)).astype(np.float32)
    p = compress_tensor(x)
    p_np = type(p)(*(np.asarray(a) for a in p))  # what the wire decoder hands back
    np.testing.assert_array_equal(np.asarray(decompress_tensor(p_np, x.shape)),
                                  np.asarray(decompress_tensor(p, x.shape)))
