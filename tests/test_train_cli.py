"""`templar-jax train` end to end on a shard folder (masking EOS targets) on 8 CPU devices."""

import json

import pytest

import numpy as np

from templar_jax.cli import main
from templar_jax.data import write_shard


@pytest.mark.slow
def test_train_cli_on_shards(tmp_path, capsys):
    seq_len = 17
    rng = np.random.default_rng(0)
    # a repeating pattern (learnable) with EOS (=0) ending each document
    docs = [np.append(rng.integers(1, 50, size=rng.integers(5, 30)), 0) for _ in range(200)]
    stream = np.concatenate(docs)
    stream = stream[: len(stream) // seq_len * seq_len].astype(np.uint32)
    write_shard(tmp_path, 0, stream, seq_len)
    argv = ["train", "--model", "tiny", "--steps", "3", "--batch", "8", "--seq-len", str(seq_len),
            "--data", str(tmp_path), "--log-every", "1", "--json", "--lr", "1e-3", "--warmup", "1", "--pad-id", "0"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "pad/EOS target id 0" in out and "8 x cpu" in out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["step"] for r in lines] == [0, 1, 2]
    assert all(np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in lines)
    assert lines[0]["loss"] > 5.0  # ~ln(4096) at init
