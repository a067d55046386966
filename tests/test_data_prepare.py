"""prepare-data, the BPE tokenizer and the bundled stdlib-docs corpus."""

import json

import numpy as np
import pytest

from templar_jax.cli import main
from templar_jax.data import DataError, ShardDataset, ensure_bundled_dataset, load_tokenizer, train_bpe
from templar_jax.data.bundled import bundled_documents, is_heldout
from templar_jax.data.prepare import prepare_texts, read_documents, tokenize_documents

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "def add(a, b):\n    return a + b\n" * 15,
    "Ünïcödé text — with <eos> inside, which must stay text. " * 10,
]


@pytest.fixture(scope="module")
def bundled(tmp_path_factory):
    return ensure_bundled_dataset(tmp_path_factory.mktemp("cache"), seq_len=128)


def test_bundled_layout_tokenizer_and_ids(bundled):
    tok = load_tokenizer(bundled / "tokenizer.json")
    assert tok.get_vocab_size() == 4096 and tok.token_to_id("<eos>") == 0
    info = json.loads((bundled / "corpus.json").read_text())
    for split in ("train", "heldout"):
        ds = ShardDataset(bundled / split, 128, verify_hash=True)
        assert ds.n_samples == info[split]["samples"] > 0
        tokens = ds.samples(np.arange(ds.n_samples))  # also checks every sample id
        assert tokens.max() < 4096
        # One EOS per document; the only other EOS are the tail padding, at the very end.
        pad = info[split]["pad_tokens"]
        assert (tokens == 0).sum() == info[split]["documents"] + pad
        assert 0 <= pad < 128 and (tokens.reshape(-1)[tokens.size - pad - 1:] == 0).all()
    assert info["train"]["samples"] > 2000 and info["train"]["shards"] >= 2  # multi-shard demo


def test_bundled_split_is_stable_and_disjoint():
    keys = [k for k, _ in bundled_documents()]
    assert len(keys) == len(set(keys)) > 1000
    held = [k for k in keys if is_heldout(k)]
    assert 0.02 < len(held) / len(keys) < 0.09
    assert is_heldout(held[0]) and not is_heldout(next(k for k in keys if k not in held))


def test_bundled_is_cached_and_deterministic(bundled, tmp_path, capsys):
    stamp = (bundled / "train" / "train_000000.npy").stat().st_mtime_ns
    assert ensure_bundled_dataset(bundled.parent, seq_len=128) == bundled
    assert (bundled / "train" / "train_000000.npy").stat().st_mtime_ns == stamp
    assert main(["prepare-data", "--bundled", "--cache-dir", str(bundled.parent)]) == 0
    assert "train" in capsys.readouterr().out
    assert (bundled / "train" / "train_000000.npy").stat().st_mtime_ns == stamp
    assert main(["prepare-data", "--bundled", "--out", str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out
    info = json.loads((bundled / "corpus.json").read_text())
    for needle in ("train", "heldout", f"{info['train']['tokens']:,}", f"{info['train']['samples']:,}"):
        assert needle in out
    for name in ("tokenizer.json", "train/manifest.json", "heldout/manifest.json"):
        assert (tmp_path / "again" / name).read_bytes() == (bundled / name).read_bytes()


def test_bpe_round_trip_and_literal_eos_is_text():
    tok = train_bpe(TEXTS, vocab_size=300)
    assert tok.token_to_id("<eos>") == 0 and tok.get_vocab_size() <= 300
    docs = list(tokenize_documents(tok, TEXTS))
    for text, ids in zip(TEXTS, docs):
        assert 0 not in ids.tolist()  # "<eos>" in the text did not become the EOS token
        assert tok.decode(ids.tolist(), skip_special_tokens=False) == text


def test_bpe_vocab_too_small_is_typed_error():
    with pytest.raises(DataError, match="vocab_size"):
        train_bpe(TEXTS, vocab_size=100)


def test_prepare_cli_on_files_and_jsonl(tmp_path, capsys):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text(TEXTS[0])
    (src / "sub" / "b.md").write_text(TEXTS[1])
    (src / "c.jsonl").write_text(json.dumps({"text": TEXTS[2]}) + "\n\n" + json.dumps({"text": "short"}) + "\n")
    (src / "ignored.bin").write_bytes(b"\x00\x01")
    assert [n.rsplit("/", 1)[-1] for n, _ in read_documents([src])] == ["a.txt", "c.jsonl:1", "c.jsonl:3", "b.md"]
    out = tmp_path / "out"
    rc = main(["prepare-data", "--input", str(src), "--out", str(out), "--seq-len", "32",
               "--samples-per-shard", "4", "--vocab-size", "320"])
    assert rc == 0
    ds = ShardDataset(out, 32, verify_hash=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_samples"] == ds.n_samples and manifest["eos_id"] == 0
    assert ds.n_shards == -(-ds.n_samples // 4) >= 2
    report = capsys.readouterr().out
    assert f"{manifest['n_tokens']:,}" in report and f"{ds.n_samples:,}" in report
    # With the trained tokenizer given explicitly, the shards come out byte-identical.
    out2 = tmp_path / "out2"
    assert main(["prepare-data", "--input", str(src), "--out", str(out2), "--seq-len", "32",
                 "--samples-per-shard", "4", "--tokenizer", str(out / "tokenizer.json")]) == 0
    assert (out2 / "train_000000.npy").read_bytes() == (out / "train_000000.npy").read_bytes()


def test_prepare_rejects_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"txt": "no text field"}\n')
    assert main(["prepare-data", "--input", str(bad), "--out", str(tmp_path / "o")]) == 1
    assert "bad.jsonl:1: not a JSON object with a 'text' field" in capsys.readouterr().err
    assert main(["prepare-data", "--input", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    with pytest.raises(DataError, match="cannot load tokenizer"):
        load_tokenizer(bad)


def test_prepare_with_given_tokenizer_uses_its_eos(bundled, tmp_path):
    tok = load_tokenizer(bundled / "tokenizer.json")
    manifest, stats = prepare_texts(TEXTS, tmp_path, seq_len=16, samples_per_shard=1000, tokenizer=tok)
    assert manifest.vocab_size == 4096 and stats.n_shards == 1 and stats.n_documents == 3
    stream = ShardDataset(tmp_path, 16).samples(np.arange(stats.n_samples)).reshape(-1)
    ends = np.nonzero(stream == 0)[0]
    assert len(ends) == 3 + stats.n_pad and ends[-1] == stream.size - 1


def test_ensure_bundled_loses_race_cleanly(tmp_path, monkeypatch):
    """Two builders at once: the second rename fails, the winner's folder is returned intact."""
    import templar_jax.data.bundled as bundled_mod

    final = tmp_path / bundled_mod.bundled_dir_name(64)

    def fake_build(out, seq_len, on_document=None):
        (out / "corpus.json").write_text('{"who": "loser"}')
        final.mkdir()  # meanwhile another process finished first
        (final / "corpus.json").write_text('{"who": "winner"}')
        return {"build_seconds": 0.0, "train": {"samples": 0}}

    monkeypatch.setattr(bundled_mod, "build_bundled_dataset", fake_build)
    assert bundled_mod.ensure_bundled_dataset(tmp_path, seq_len=64) == final
    assert json.loads((final / "corpus.json").read_text()) == {"who": "winner"}
    assert [p.name for p in tmp_path.iterdir()] == [final.name]  # no temporary folder left
