"""ValidatorState JSON persistence: round trip, atomic replace, typed errors on bad files."""

import json
import os

import pytest

from templar_jax.gauntlet import state as st
from templar_jax.gauntlet.config import GauntletConfig
from templar_jax.gauntlet.errors import StateError
from templar_jax.gauntlet.state import PeerRecord, ValidatorState

CFG = GauntletConfig()


def sample_state():
    return ValidatorState(
        window=41,
        peers={3: PeerRecord(mu=27.5, sigma=7.9, bma=0.1425, eval_count=3, final_score=0.123,
                             loss_score=-0.002, sync=0.8, steps_behind=0.25, last_eval_window=40,
                             inactive_windows=1, negative_streak=2, excluded=True, banned_until=60),
               12: PeerRecord.initial(CFG)},
        sync_prev_sample=(0.1, -0.2), sync_change_ema=(1e-5, 2e-5),
    )


def test_round_trip_and_atomic_overwrite(tmp_path):
    path = tmp_path / "sub" / "gauntlet.json"
    state = sample_state()
    st.save_state(state, path)
    assert st.load_state(path) == state
    later = state.update_peer(12, CFG, final_score=1.5)
    st.save_state(later, path)
    assert st.load_state(path) == later
    assert sorted(os.listdir(path.parent)) == ["gauntlet.json"]  # no temp files left behind
    assert st.load_or_init(tmp_path / "absent.json") == ValidatorState()
    assert json.loads(path.read_text())["version"] == st.STATE_VERSION


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "gauntlet.json"
    st.save_state(sample_state(), path)
    bad = sample_state().update_peer(3, CFG, final_score=float("nan"))
    with pytest.raises(StateError, match="non-finite"):
        st.save_state(bad, path)
    assert st.load_state(path) == sample_state()
    assert sorted(os.listdir(tmp_path)) == ["gauntlet.json"]


def _doc():
    return json.loads(st.state_to_json(sample_state()))


@pytest.mark.parametrize("text,reason", [
    ("{not json", "not valid JSON"),
    ('{"window": NaN}', "not valid JSON"),
    ("[]", "kind"),
    (json.dumps({**_doc(), "version": 99}), "unknown state version 99"),
    (json.dumps({**_doc(), "window": "41"}), "window"),
    (json.dumps({**_doc(), "peers": []}), "peers"),
    (json.dumps({**_doc(), "peers": {"x1": {}}}), "not a uid"),
    (json.dumps({**_doc(), "sync_change_ema": [1.0]}), "differ in length"),
    (json.dumps({**_doc(), "sync_prev_sample": "abc"}), "sync_prev_sample"),
])
def test_corrupt_documents_raise_state_error(text, reason):
    with pytest.raises(StateError, match=reason):
        st.state_from_json(text)


@pytest.mark.parametrize("field,value,reason", [
    ("mu", "25", "mu must be a finite number"),
    ("mu", True, "mu must be a finite number"),
    ("eval_count", 1.5, "eval_count must be an integer"),
    ("excluded", 1, "excluded must be a boolean"),
    ("sigma", 0.0, "sigma must be > 0"),
    ("extra", 1, "record fields"),
])
def test_bad_record_fields_raise_state_error(field, value, reason):
    doc = _doc()
    doc["peers"]["3"][field] = value
    with pytest.raises(StateError, match=reason):
        st.state_from_json(json.dumps(doc))


def test_unreadable_files(tmp_path):
    with pytest.raises(StateError, match="no state file"):
        st.load_state(tmp_path / "missing.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(StateError):
        st.load_state(tmp_path / "bin.json")
    (tmp_path / "trunc.json").write_text(st.state_to_json(sample_state())[:-20])
    with pytest.raises(StateError):
        st.load_or_init(tmp_path / "trunc.json")
