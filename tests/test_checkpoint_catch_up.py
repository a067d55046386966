"""catch_up: replaying missed outer steps equals having applied them live."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from templar_jax.checkpoint.catch_up import catch_up

ALPHA = 0.4


@jax.jit
def outer_step(params, update):
    # The network's outer step: plain SGD with the outer learning rate.
    return jax.tree.map(lambda p, u: p - ALPHA * u, params, update)


def _synthetic_update(window: int) -> dict:
    rng = np.random.default_rng(window)
    return {"w": jnp.asarray(rng.standard_normal((8, 16), dtype=np.float32)),
            "b": {"scale": jnp.asarray(rng.standard_normal((16,), dtype=np.float32))}}


def _init() -> dict:
    return {"w": jnp.ones((8, 16), jnp.float32), "b": {"scale": jnp.zeros((16,), jnp.float32)}}


def test_replay_is_bit_identical_to_live_and_skips_missing():
    missing = {13, 17}
    published = {w: _synthetic_update(w) for w in range(10, 20) if w not in missing}

    # Live node: applies each window's update as it arrives (missing ones are skipped
    # by everyone, because the aggregator object never existed).
    live = _init()
    for window in range(10, 20):
        if window in published:
            live = outer_step(live, published[window])
    # Late joiner: restored a checkpoint taken before window 10, now at window 20.
    result = catch_up(_init(), 10, 20, published.get, outer_step)
    assert result.applied == [w for w in range(10, 20) if w not in missing]
    assert result.skipped == [13, 17]
    for a, b in zip(jax.tree.leaves(live), jax.tree.leaves(result.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(result.params["w"]), np.ones((8, 16)))


def test_fetch_errors_count_as_skips_and_empty_range():
    def fetch(window):
        if window == 5:
            raise ValueError("corrupt aggregator object")
        if window == 6:
            raise KeyError("gone")
        return _synthetic_update(window)

    result = catch_up(_init(), 4, 8, fetch, outer_step)
    assert result.applied == [4, 7] and result.skipped == [5, 6]
    same = catch_up(_init(), 9, 9, fetch, outer_step)
    assert same.applied == [] and same.skipped == []
    with pytest.raises(ValueError, match="before start_window"):
        catch_up(_init(), 9, 8, fetch, outer_step)
