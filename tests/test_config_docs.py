"""docs/run-config.md is generated from the RunConfig dataclasses and the committed file is current."""

import re
from pathlib import Path

from templar_jax.cli import main
from templar_jax.config import all_keys
from templar_jax.config.docs import run_config_docs

REPO = Path(__file__).resolve().parents[1]


def test_committed_docs_are_current():
    assert (REPO / "docs" / "run-config.md").read_text() == run_config_docs(), (
        "docs/run-config.md is stale: run `templar-jax config docs --write`")


def test_docs_document_exactly_the_schema_keys():
    text = run_config_docs()
    documented = re.findall(r"\| `([a-z_]+(?:\.[a-z_]+)+)` \|", text)
    assert sorted(documented) == sorted(all_keys()) and len(documented) == len(set(documented))
    row = next(line for line in text.splitlines() if line.startswith("| `inner.final_lr_fraction`"))
    assert "`0.1`" in row and "fraction of peak" in row  # doc + default from TrainConfig
    assert "| `peers.gather` | int | required |" in text
    assert "### `sparseloco.kernel` (optional)" in text


def test_config_docs_command_writes_and_checks(tmp_path, capsys):
    path = tmp_path / "run-config.md"
    assert main(["config", "docs", "--check", "--path", str(path)]) == 1
    assert main(["config", "docs", "--write", "--path", str(path)]) == 0
    assert main(["config", "docs", "--check", "--path", str(path)]) == 0
    assert path.read_text() == run_config_docs()


def test_config_show_prints_the_resolved_config(capsys):
    assert main(["config", "show", "demo", "--set", "inner.steps=3"]) == 0
    out = capsys.readouterr().out
    assert "  steps: 3\n" in out and "kernel:\n" in out
    assert main(["config", "show", "demo", "--set", "inner.stepz=3"]) == 2
    assert "unknown key 'inner.stepz'" in capsys.readouterr().err
