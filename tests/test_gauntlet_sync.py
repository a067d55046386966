"""Sync score: sample positions, debug objects, change EMA, steps behind, the score curve."""

import json

import numpy as np
import pytest

from templar_jax.gauntlet import sync
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import ScoreInputError
from templar_jax.gauntlet.state import ValidatorState, state_from_json, state_to_json

CFG = GauntletConfig()
TABLE = {"embed/embedding": (50, 16), "layers/attn/wq": (2, 16, 16), "final_norm/scale": (16,),
         "tiny": (1,)}


def test_positions_are_deterministic_distinct_and_independent_of_other_tensors():
    pos = sync.choose_sample_positions(TABLE, CFG)
    assert list(pos) == sorted(TABLE)
    assert {k: len(v) for k, v in pos.items()} == {"embed/embedding": 2, "final_norm/scale": 2,
                                                   "layers/attn/wq": 2, "tiny": 1}
    for name, p in pos.items():
        assert p.dtype == np.int64 and np.all(np.diff(p) > 0)
        assert p.min() >= 0 and p.max() < np.prod(TABLE[name])
    again = sync.choose_sample_positions(dict(reversed(list(TABLE.items()))), CFG)
    sub = sync.choose_sample_positions({"layers/attn/wq": (2, 16, 16)}, CFG)
    np.testing.assert_array_equal(again["layers/attn/wq"], pos["layers/attn/wq"])
    np.testing.assert_array_equal(sub["layers/attn/wq"], pos["layers/attn/wq"])
    other = sync.choose_sample_positions(TABLE, GauntletConfig(sync_sample_seed=1))
    assert any(not np.array_equal(other[n], pos[n]) for n in TABLE)


def test_sample_params_and_debug_object_round_trip():
    rng = np.random.default_rng(0)
    params = {n: rng.standard_normal(s).astype(np.float32) for n, s in TABLE.items()}
    pos = sync.choose_sample_positions(TABLE, CFG)
    sample = sync.sample_params(params, pos)
    expected = np.concatenate([params[n].reshape(-1)[pos[n]] for n in sorted(TABLE)])
    np.testing.assert_array_equal(sample, expected.astype(np.float64))
    obj = json.loads(json.dumps(sync.debug_object(params, pos, window=12)))
    assert obj["window"] == 12
    np.testing.assert_array_equal(sync.parse_debug_object(obj, pos), sample)


def test_sample_params_reads_jax_arrays():
    import jax.numpy as jnp

    pos = sync.choose_sample_positions({"w": (8, 8)}, CFG)
    w = jnp.arange(64, dtype=jnp.float32).reshape(8, 8)
    np.testing.assert_array_equal(sync.sample_params({"w": w}, pos), pos["w"].astype(np.float64))


@pytest.mark.parametrize("mutate,reason", [
    (lambda o: o.update(version=9), "version"),
    (lambda o: o["values"].pop("tiny"), "tiny"),
    (lambda o: o["values"].update(tiny=[1.0, 2.0]), "tiny"),
    (lambda o: o["values"].update(tiny=["x"]), "non-number"),
    (lambda o: o["values"].update(tiny=[True]), "non-number"),
    (lambda o: o["values"].update(tiny=[float("inf")]), "non-finite"),
])
def test_bad_debug_objects_raise_with_reason(mutate, reason):
    params = {n: np.zeros(s, np.float32) for n, s in TABLE.items()}
    pos = sync.choose_sample_positions(TABLE, CFG)
    obj = sync.debug_object(params, pos, window=1)
    mutate(obj)
    with pytest.raises(ScoreInputError, match=reason):
        sync.parse_debug_object(obj, pos)


def test_change_ema_numbers_and_state_bookkeeping():
    assert sync.update_change_ema(None, np.ones(2), None, CFG) is None
    first = sync.update_change_ema(np.array([0.0, 1.0]), np.array([0.5, 0.0]), None, CFG)
    np.testing.assert_allclose(first, [0.5, 1.0])
    second = sync.update_change_ema(np.array([0.5, 0.0]), np.array([0.5, 2.0]), first, CFG)
    np.testing.assert_allclose(second, [0.8 * 0.5 + 0.2 * 0.0, 0.8 * 1.0 + 0.2 * 2.0])
    state = ValidatorState()
    for sample in ([0.0, 1.0], [0.5, 0.0], [0.5, 2.0]):
        state = sync.observe_validator_sample(state, np.array(sample), CFG)
    np.testing.assert_allclose(state.sync_change_ema, second)
    assert state.sync_prev_sample == (0.5, 2.0)
    assert state_from_json(state_to_json(state)) == state
    reshaped = sync.observe_validator_sample(state, np.zeros(3), CFG)
    assert reshaped.sync_change_ema is None and len(reshaped.sync_prev_sample) == 3


def test_steps_behind_uses_median_or_trimmed_mean():
    ema = np.full(5, 0.1)
    val = np.zeros(5)
    miner = np.array([0.1, 0.1, 0.2, 0.2, 100.0])  # x = 1, 1, 2, 2, 1000
    assert sync.steps_behind(val, miner, ema, CFG) == pytest.approx(2.0)
    trimmed = GauntletConfig(sync_robust="trimmed_mean", sync_trim_fraction=0.2)
    assert sync.steps_behind(val, miner, ema, trimmed) == pytest.approx(5 / 3)
    assert sync.steps_behind(val, val, np.zeros(5), CFG) == 0.0  # unchanged params, no lag
    assert sync.steps_behind(val, np.full(5, np.nan), ema, CFG) == float("inf")
    with pytest.raises(ScoreInputError):
        sync.steps_behind(val, miner[:4], ema, CFG)


def test_sync_score_curve():
    assert sync.sync_score(0.0, CFG) == 1.0
    assert sync.sync_score(1.5, CFG) == pytest.approx(0.5**2.5)
    assert sync.sync_score(1.0, CFG) == pytest.approx((2 / 3) ** 2.5)
    assert sync.sync_score(3.0, CFG) == 0.0
    assert sync.sync_score(50.0, CFG) == 0.0
    assert sync.sync_score(float("inf"), CFG) == 0.0
    assert sync.sync_score(float("nan"), CFG) == 0.0
