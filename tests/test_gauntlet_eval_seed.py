"""The validator's evaluation seed: unknowable before the upload deadline, recorded for audits;
the evaluation draw and the evaluation sequences follow it; uid recycling; escalating slash."""

import json
import os
import stat

import numpy as np
import pytest

from templar_jax.data import validator_own_indices, validator_random_indices
from templar_jax.gauntlet import (
    GauntletConfig,
    draw,
    evaluation_seed,
    load_or_create_secret,
    missing_factor,
    observe_hotkeys,
    select_eval_uids,
    slashing,
)
from templar_jax.gauntlet import state as st
from templar_jax.gauntlet.errors import StateError
from templar_jax.gauntlet.state import PeerRecord, ValidatorState

CFG = GauntletConfig()


def test_secret_is_created_once_private_and_checked(tmp_path):
    path = tmp_path / "run" / "validator-0-eval-secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32 and load_or_create_secret(path) == secret  # kept across restarts
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_or_create_secret(tmp_path / "other") != secret
    path.write_bytes(b"short")
    with pytest.raises(StateError, match="5 bytes"):
        load_or_create_secret(path)


def test_seed_depends_on_every_input_and_is_reproducible():
    secret = bytes(range(32))
    base = evaluation_seed(secret, "0xab", 7, 0)
    assert base == evaluation_seed(secret, "0xab", 7, 0) and 0 <= base < 2**128
    others = {evaluation_seed(bytes(32), "0xab", 7, 0), evaluation_seed(secret, "0xac", 7, 0),
              evaluation_seed(secret, "0xab", 8, 0), evaluation_seed(secret, "0xab", 7, 1)}
    assert base not in others and len(others) == 4
    d = draw(secret, 7, 123, "0xab")
    assert (d.window, d.block, d.block_hash, d.seed) == (7, 123, "0xab", base)
    assert len(d.secret_sha256) == 64


def test_the_seed_drives_the_evaluated_uids_and_sequences():
    """What a miner can compute in advance (seed None / --validator-seed 0) no longer matches."""
    state = ValidatorState()
    cfg = GauntletConfig(eval_uids_per_window=5)
    public = select_eval_uids(state, range(40), 9, cfg)
    assert public == select_eval_uids(state, range(40), 9, cfg, seed=None)  # unchanged without a seed
    drawn = [select_eval_uids(state, range(40), 9, cfg, seed=evaluation_seed(bytes(32), f"0x{i}", 9)) for i in range(8)]
    assert all(len(d) == 5 for d in drawn) and len({tuple(d) for d in drawn}) > 4
    seed = evaluation_seed(bytes(32), "0x1", 9)
    assert select_eval_uids(state, range(40), 9, cfg, seed=seed) == drawn[1]  # reproducible given the seed
    own_public = validator_own_indices(3, 9, 1000, 4, 8, 8, validator_seed=0, n=8)
    own = validator_own_indices(3, 9, 1000, 4, 8, 8, validator_seed=seed, n=8)
    rand_public = validator_random_indices(9, 1000, validator_seed=0, n=8)
    rand = validator_random_indices(9, 1000, validator_seed=seed, n=8)
    assert not np.array_equal(np.sort(own), np.sort(own_public))
    assert not np.array_equal(np.sort(rand), np.sort(rand_public))


def test_draws_are_recorded_bounded_and_survive_a_restart(tmp_path):
    state = ValidatorState(hotkeys={1: "miner-1"})
    for w in range(st.DRAWS_KEPT + 5):
        state = state.with_draw(draw(bytes(32), w, 10 * w + 10, f"0x{w:02x}"))
    state = state.with_draw(draw(bytes(32), st.DRAWS_KEPT + 4, 999, "0xff"))  # same window: replaced
    assert len(state.eval_draws) == st.DRAWS_KEPT and state.eval_draws[-1].block == 999
    assert [d.window for d in state.eval_draws] == list(range(5, st.DRAWS_KEPT + 5))
    st.save_state(state, tmp_path / "s.json")
    back = st.load_state(tmp_path / "s.json")
    assert back.eval_draws == state.eval_draws and back.hotkeys == {1: "miner-1"}


def test_version_1_state_still_loads():
    doc = json.loads(st.state_to_json(ValidatorState(window=3, peers={2: PeerRecord.initial(CFG)})))
    doc["version"] = 1
    del doc["hotkeys"], doc["eval_draws"], doc["peers"]["2"]["missing_streak"]
    back = st.state_from_json(json.dumps(doc))
    assert back.peers[2] == PeerRecord.initial(CFG) and back.hotkeys == {} and back.eval_draws == ()
    doc["version"] = 2  # a version-2 file must carry the new record field
    with pytest.raises(StateError, match="record fields"):
        st.state_from_json(json.dumps(doc))


@pytest.mark.parametrize("draws", [{"window": 1}, [{"window": 1}], [dict(window=1, block=2, block_hash=3,
                                                                          secret_sha256="x", seed=4)]])
def test_bad_draws_raise_state_error(draws):
    doc = json.loads(st.state_to_json(ValidatorState()))
    doc["eval_draws"] = draws
    with pytest.raises(StateError, match="eval_draws"):
        st.state_from_json(json.dumps(doc))


def test_a_new_hotkey_on_a_uid_resets_its_record_and_ban():
    strong = PeerRecord(mu=40.0, sigma=2.0, bma=0.9, eval_count=30, final_score=3.0, banned_until=99)
    state = ValidatorState(peers={1: strong, 2: strong})
    state, recycled = observe_hotkeys(state, {1: "a", 2: "b"})  # first sighting: only recorded
    assert recycled == [] and state.peers[1] == strong and state.hotkeys == {1: "a", 2: "b"}
    state, recycled = observe_hotkeys(state, {1: "a", 2: "c", 3: "d"})
    assert recycled == [2] and state.peers[1] == strong and 2 not in state.peers
    assert state.peer(2, CFG) == PeerRecord.initial(CFG) and not state.peer(2, CFG).is_banned(50)
    assert state.hotkeys == {1: "a", 2: "c", 3: "d"}


def test_missing_uploads_are_slashed_escalating():
    state = ValidatorState(peers={1: PeerRecord(mu=30.0, sigma=2.0, final_score=2.0)})
    seen = []
    for _ in range(3):
        state = slashing.slash_missing(state, 1, CFG)
        seen.append(state.peers[1].final_score)
    assert seen == pytest.approx([1.5, 1.5 * 0.75**2, 1.5 * 0.75**2 * 0.75**3])
    assert state.peers[1].missing_streak == 3
    # a silent window in between (not evaluated) counts towards the streak too
    state = slashing.apply_inactivity(state, active_uids=[], cfg=CFG)
    assert state.peers[1].missing_streak == 4
    before = state.peers[1].final_score
    state = slashing.slash_missing(state, 1, CFG)
    assert state.peers[1].final_score == pytest.approx(before * 0.75**5)
    # a valid payload ends the streak; the next miss costs the base rate again
    state = slashing.apply_inactivity(ValidatorState(peers={1: PeerRecord(mu=30.0, sigma=2.0, final_score=2.0,
                                                                          missing_streak=4)}), [1], CFG)
    assert state.peers[1].missing_streak == 0
    assert slashing.slash_missing(state, 1, CFG).peers[1].final_score == pytest.approx(1.5)
    flat = GauntletConfig(missing_slash_escalates=False)
    assert [missing_factor(k, flat) for k in (1, 2, 5)] == [0.75, 0.75, 0.75]
    assert PeerRecord(mu=1.0, sigma=1.0, missing_streak=2).reset(CFG).missing_streak == 2  # reset keeps it
