"""`templar-jax chain init|register|status|advance` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

from templar_jax import cli
from templar_jax.chain import LocalChain
from templar_jax.commands.chain import mask_commitment

SECRET = "A" * 32 + "k" * 32 + "s3cr3t" * 10 + "zzzz"  # 128 chars


def _run(capsys, *argv) -> tuple[int, str]:
    rc = cli.main(list(argv))
    return rc, capsys.readouterr().out


def test_init_register_status_flow(tmp_path, capsys):
    db = str(tmp_path / "run" / "chain.db")
    rc, out = _run(capsys, "chain", "init", "--path", db, "--block-time", "1",
                   "--blocks-per-window", "10", "--setting", "version=\"v7\"", "--setting", "k=3")
    assert rc == 0 and "created clock chain" in out
    chain = LocalChain(db)
    assert (chain.block_time, chain.blocks_per_window) == (1.0, 10)
    assert chain.settings == {"version": "v7", "k": 3}

    rc, _ = _run(capsys, "chain", "init", "--path", db)
    assert rc == 1  # refuses to overwrite without --force

    rc, out = _run(capsys, "chain", "register", "--path", db, "--hotkey", "validator-0", "--stake", "1000")
    assert rc == 0 and "uid 0" in out
    rc, out = _run(capsys, "chain", "register", "--path", db, "--hotkey", "miner-0")
    assert rc == 0 and "uid 1" in out
    rc, out = _run(capsys, "chain", "register", "--path", db, "--hotkey", "miner-0")
    assert rc == 0 and "uid 1" in out

    chain.with_hotkey("validator-0").commit(SECRET)
    chain.with_hotkey("validator-0").set_weights([1], [1.0])

    rc, out = _run(capsys, "chain", "status", "--path", db)
    assert rc == 0
    for text in ("validator-0", "miner-0", "1000", "1.0000", "AAAAAA", "128 B", "latest weights"):
        assert text in out, text
    assert "s3cr3t" not in out  # the secret part never reaches the terminal

    rc, out = _run(capsys, "chain", "status", "--path", db, "--json")
    status = json.loads(out)
    assert status["leader_uid"] == 0 and status["blocks_per_window"] == 10
    assert [n["hotkey"] for n in status["neurons"]] == ["validator-0", "miner-0"]
    assert status["neurons"][0]["commitment"] == mask_commitment(SECRET)
    assert status["neurons"][1]["incentive"] == 1.0
    assert status["weights"] == {"0": {"1": 1.0}}
    assert "s3cr3t" not in out

    rc, _ = _run(capsys, "chain", "init", "--path", db, "--force", "--manual")
    assert rc == 0 and LocalChain(db).metagraph().n == 0


def test_advance_manual_chain(tmp_path, capsys):
    db = str(tmp_path / "chain.db")
    assert _run(capsys, "chain", "init", "--path", db, "--manual", "--blocks-per-window", "4")[0] == 0
    rc, out = _run(capsys, "chain", "advance", "--path", db, "-n", "9")
    assert rc == 0 and "block 9 (window 2)" in out
    assert LocalChain(db).current_block() == 9


def test_errors_are_reported_not_raised(tmp_path, capsys):
    missing = str(tmp_path / "nope.db")
    assert _run(capsys, "chain", "status", "--path", missing)[0] == 1
    assert _run(capsys, "chain", "register", "--path", missing, "--hotkey", "x")[0] == 1
    db = str(tmp_path / "chain.db")
    _run(capsys, "chain", "init", "--path", db)
    assert _run(capsys, "chain", "register", "--path", db, "--hotkey", "x", "--stake", "-5")[0] == 1
    assert _run(capsys, "chain", "advance", "--path", db)[0] == 1  # clock chain


def test_mask_commitment():
    assert mask_commitment(SECRET) == "AAAAAA… (128 B)"
    assert mask_commitment("abc") == "*** (3 B)"
    assert mask_commitment("é" * 10) == "éééééé… (20 B)"
    # a lone surrogate (no chain can store it) is shown as invalid, never raises UnicodeEncodeError
    assert mask_commitment("secret\ud800") == "(invalid commitment, 7 chars)"


def test_help_is_fast_and_complete():
    out = subprocess.run(
        [sys.executable, "-m", "templar_jax.cli", "chain", "init", "--help"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    for flag in ("--path", "--block-time", "--blocks-per-window", "--manual", "--force"):
        assert flag in out
