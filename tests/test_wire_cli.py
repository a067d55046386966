"""`templar-jax payload size|inspect`, and the wire table built from the model's own shapes."""

import numpy as np

from templar_jax.cli import main
from templar_jax.model import load_model_config, param_shapes
from templar_jax.wire import encode, expected_table
from templar_jax.wire.sizes import covenant_72b_table
from templar_jax.wire.synthetic import random_payload


def test_model_param_shapes_give_the_covenant_table():
    assert expected_table(param_shapes(load_model_config("covenant-72b"))) == covenant_72b_table()


def test_payload_inspect_valid_and_invalid(tmp_path, capsys):
    table = expected_table(param_shapes(load_model_config("tiny")))
    data = encode(random_payload(np.random.default_rng(0), table), {"window": 1, "uid": 2}, expected=table)
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(data)
    bad.write_bytes(data[:-1])
    assert main(["payload", "inspect", "--model", "tiny", str(good)]) == 0
    assert "valid payload" in capsys.readouterr().out
    assert main(["payload", "inspect", "--model", "tiny", str(bad)]) == 1
    assert "INVALID: truncated" in capsys.readouterr().out


def test_payload_size_runs(capsys):
    assert main(["payload", "size", "--model", "tiny"]) == 0
    assert "elias-fano" in capsys.readouterr().out
