"""The `impl="pallas"` switch of the transformation and the aggregation (interpret mode on CPU)
gives the same payloads, error feedback and aggregate as the default pure-JAX path."""

import jax
import numpy as np
import pytest

from templar_jax.sparseloco import aggregate, sparseloco


def _tree(seed):
    rng = np.random.default_rng(seed)
    return {"layers": {"w": rng.standard_normal((2, 64, 128)).astype(np.float32)},
            "emb": rng.standard_normal((128, 64)).astype(np.float32)}


def test_pallas_switch_matches_pure_jax():
    params, delta = _tree(0), _tree(1)
    outs = {}
    for impl in ("jax", "pallas"):
        tx = sparseloco(impl=impl)
        state = tx.init(params)
        payload, state = tx.update(delta, state)
        payload2, state = tx.update(_tree(2), state)
        agg = aggregate([payload, payload2], params, impl=impl)
        outs[impl] = jax.device_get((payload, state.error, agg))
    flat_a, _ = jax.tree.flatten(outs["jax"])
    flat_b, _ = jax.tree.flatten(outs["pallas"])
    assert len(flat_a) == len(flat_b) > 0
    for a, b in zip(flat_a, flat_b):
        np.testing.assert_array_equal(a, b)


def test_unknown_impl_is_a_clear_error():
    with pytest.raises(ValueError, match="implementation"):
        sparseloco(impl="cuda")
