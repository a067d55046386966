"""Calibration files: every figure with its source and device; errors name the key."""

import pytest

from templar_jax.netsim import (FIGURES, CalibrationError, costs_from_dict, load_costs, packaged_calibration,
                                save_costs)


def entries(**over):
    d = {k: {"value": 1.0, "source": "hand", "device": "cpu"} for k in FIGURES}
    d.update(over)
    return d


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    c = costs_from_dict(entries(train_tokens_per_s={"value": 123.0, "source": "bench", "device": "H200"}))
    save_costs(c, tmp_path / f"cal{suffix}")
    back = load_costs(tmp_path / f"cal{suffix}")
    assert back == c and back["train_tokens_per_s"] == 123.0
    assert back.figures["train_tokens_per_s"].device == "H200"


def test_errors_name_the_key():
    d = entries()
    del d["apply_s"]
    with pytest.raises(CalibrationError, match="apply_s"):
        costs_from_dict(d)
    with pytest.raises(CalibrationError, match="typo_s"):
        costs_from_dict(entries(typo_s={"value": 1, "source": "x", "device": "y"}))
    with pytest.raises(CalibrationError, match="encode_s_per_param: missing 'source'"):
        costs_from_dict(entries(encode_s_per_param={"value": 1, "device": "y"}))
    with pytest.raises(CalibrationError, match="decode_s_per_param: value 'fast'"):
        costs_from_dict(entries(decode_s_per_param={"value": "fast", "source": "x", "device": "y"}))
    with pytest.raises(CalibrationError, match="train_tokens_per_s"):
        costs_from_dict(entries(train_tokens_per_s={"value": 0, "source": "x", "device": "y"}))


def test_packaged_covenant_calibration_names_every_source():
    c = load_costs(packaged_calibration("covenant-72b"))
    assert all(f.source and f.device for f in c.figures.values())
    # 30 inner steps of 192 x 2048 tokens in 20 minutes
    assert c["train_tokens_per_s"] == pytest.approx(30 * 192 * 2048 / 1200)
    with pytest.raises(CalibrationError, match="nope"):
        packaged_calibration("nope")


def test_host_slowdown_splits_the_host_throughput():
    c = costs_from_dict(entries(train_tokens_per_s={"value": 1000, "source": "x", "device": "y"},
                                host_tokens_per_s={"value": 1500, "source": "x", "device": "y"}))
    assert c.host_slowdown(1) == 1.0 and c.host_slowdown(3) == 2.0
    alone = costs_from_dict(entries(host_tokens_per_s={"value": 0, "source": "x", "device": "y"}))
    assert alone.host_slowdown(7) == 1.0
