"""templar_jax.evaluate: held-out loss / perplexity / bits per byte against a direct computation,
the `templar-jax eval` CLI on a real orbax checkpoint, and the lm-eval guard."""

from __future__ import annotations

import json
import math

import jax
import numpy as np
import pytest

from templar_jax.checkpoint import CheckpointMeta, LocalCheckpoints
from templar_jax.cli import main
from templar_jax.convert.from_hf import model_config_to_json
from templar_jax.data import load_tokenizer, prepare_texts, train_bpe
from templar_jax.evaluate import EvalError, LmEvalUnavailable, evaluate_shards, load_checkpoint, open_eval_data
from templar_jax.evaluate import lm_eval_tasks
from templar_jax.evaluate.byte_counts import token_byte_lengths
from templar_jax.model import apply, init_params
from templar_jax.model.config import ModelConfig

SEQ_LEN = 32
WORDS = ("the quick brown fox jumps over a lazy dog while peers exchange sparse pseudo gradients "
         "and validators score every miner window after window").split()


def _texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(5, 40)))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """ASCII shard set (train/ + heldout/, own BPE), tiny model, a 1-step orbax checkpoint."""
    root = tmp_path_factory.mktemp("evaldata")
    tok = train_bpe(_texts(200, 0), vocab_size=300)
    prepare_texts(_texts(200, 0), root / "train", seq_len=SEQ_LEN, samples_per_shard=64, tokenizer=tok)
    prepare_texts(_texts(30, 1), root / "heldout", seq_len=SEQ_LEN, samples_per_shard=8, tokenizer=tok)
    tok.save(str(root / "tokenizer.json"))
    cfg = ModelConfig(vocab_size=320, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, d_ff=64,
                      max_seq_len=SEQ_LEN, rope_theta=10000.0)
    params = init_params(cfg, 7)
    ckpt = tmp_path_factory.mktemp("ckpt") / "ckpts"
    with LocalCheckpoints(ckpt, max_to_keep=None, async_save=False) as c:
        c.save(3, params, meta=CheckpointMeta(window=3, global_step=3, version="t", extra={
            "model_config": model_config_to_json(cfg), "seq_len": SEQ_LEN}))
        c.wait()
    data = open_eval_data(str(root), split="heldout")
    forward = jax.jit(lambda p, t: apply(cfg, p, t))
    return {"root": root, "cfg": cfg, "params": params, "ckpt": ckpt, "data": data, "tok": tok,
            "forward": forward}


def _direct(setup, n_samples: int) -> tuple[float, int, int]:
    """(total nats, unmasked targets, UTF-8 bytes of those targets) the plain way: float64
    log-softmax of the model's logits over all samples at once, bytes by decoding each row."""
    data, tok = setup["data"], setup["tok"]
    tokens = data.dataset.samples(np.arange(n_samples)).astype(np.int32)
    logits = np.asarray(setup["forward"](setup["params"], tokens[:, :-1]), np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    targets = tokens[:, 1:]
    keep = targets != data.pad_id
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    n_bytes = sum(len(tok.decode([int(t) for t in row[m]]).encode("utf-8")) for row, m in zip(targets, keep))
    return float(nll[keep].sum()), int(keep.sum()), n_bytes


def test_byte_lengths_sum_to_utf8_length_of_text():
    texts = ["naïve café — 日本語 text", "plain ascii words and more words", "émigré façade über"] * 20
    tok = train_bpe(texts, vocab_size=300)
    lengths = token_byte_lengths(tok)
    assert lengths[0] == 0  # <eos> stands for no text
    for text in ("naïve café über", "日本 and ascii", "façade"):
        assert lengths[tok.encode(text).ids].sum() == len(text.encode("utf-8"))


def test_open_eval_data_reads_manifest_and_tokenizer(setup):
    data = setup["data"]
    assert data.pad_id == 0 and data.dataset.seq_len == SEQ_LEN
    assert data.folder == setup["root"] / "heldout"
    assert data.byte_lengths is not None and data.byte_lengths.shape[0] == setup["tok"].get_vocab_size()
    with pytest.raises(EvalError, match="does not exist"):
        open_eval_data(str(setup["root"] / "nope"))
    with pytest.raises(EvalError, match="no valid/"):
        open_eval_data(str(setup["root"]), split="valid")


@pytest.mark.parametrize("batch_size,max_batches", [(8, None), (8, 2)])
def test_metrics_match_direct_computation(setup, batch_size, max_batches):
    data = setup["data"]
    n_all = data.dataset.n_samples
    assert n_all % 8, "the fixture must leave a partial last batch (filled with pad rows)"
    res = evaluate_shards(setup["params"], setup["cfg"], data, batch_size=batch_size, max_batches=max_batches)
    n = n_all if max_batches is None else batch_size * max_batches
    nats, n_targets, n_bytes = _direct(setup, n)
    assert res.n_samples == n and res.n_targets == n_targets and res.n_bytes == n_bytes
    assert res.total_nats == pytest.approx(nats, rel=1e-5)
    assert res.loss == pytest.approx(nats / n_targets, rel=1e-5)
    assert res.perplexity == pytest.approx(math.exp(nats / n_targets), rel=1e-4)
    assert res.bits_per_byte == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    # an untrained model sits near uniform over the vocabulary
    assert abs(res.loss - math.log(setup["cfg"].vocab_size)) < 1.0


def test_token_outside_the_vocab_is_an_error(setup):
    small = setup["cfg"].replace(vocab_size=64)
    with pytest.raises(EvalError, match="token id"):
        evaluate_shards({}, small, setup["data"], batch_size=8, max_batches=1)  # fails before any compute


def test_load_checkpoint_root_and_step_dir(setup):
    a = load_checkpoint(setup["ckpt"])
    b = load_checkpoint(setup["ckpt"] / "3")
    assert a.step == b.step == 3 and a.model_cfg == setup["cfg"] and a.seq_len == SEQ_LEN
    np.testing.assert_array_equal(np.asarray(a.params["embed"]["embedding"]),
                                  np.asarray(setup["params"]["embed"]["embedding"]))
    with pytest.raises(EvalError, match="do not fit"):
        load_checkpoint(setup["ckpt"], model="tiny")
    with pytest.raises(EvalError, match="does not exist"):
        load_checkpoint(setup["ckpt"] / "nothing")


def test_cli_eval_writes_json_and_table(setup, tmp_path, capsys):
    out = tmp_path / "res.json"
    rc = main(["eval", str(setup["ckpt"]), "--data", str(setup["root"]), "--batches", "1", "--batch-size", "8",
               "--json", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    nats, n_targets, n_bytes = _direct(setup, 8)
    h = doc["heldout"]
    assert doc["step"] == 3 and h["n_samples"] == 8 and h["n_targets"] == n_targets and h["n_bytes"] == n_bytes
    assert h["loss"] == pytest.approx(nats / n_targets, rel=1e-5)
    assert h["bits_per_byte"] == pytest.approx(nats / math.log(2) / n_bytes, rel=1e-5)
    assert "bits_per_byte" in doc["definitions"]
    shown = capsys.readouterr().out
    assert "bits per byte" in shown and f"{h['loss']:.4f}" in shown


def test_cli_eval_bad_inputs_exit_1(setup, tmp_path):
    assert main(["eval", str(tmp_path / "missing")]) == 1
    assert main(["eval", str(setup["ckpt"]), "--data", str(setup["root"]), "--model", "tiny"]) == 1


def test_lm_eval_guard(setup, monkeypatch, caplog):
    assert lm_eval_tasks.parse_tasks("standard") == list(lm_eval_tasks.STANDARD_TASKS)
    assert lm_eval_tasks.parse_tasks("piqa, standard") == ["piqa"] + [
        t for t in lm_eval_tasks.STANDARD_TASKS if t != "piqa"]
    real = lm_eval_tasks.importlib.util.find_spec
    monkeypatch.setattr(lm_eval_tasks.importlib.util, "find_spec",
                        lambda name, *a: None if name == "lm_eval" else real(name, *a))
    with pytest.raises(LmEvalUnavailable, match="pip install lm-eval.*network access"):
        lm_eval_tasks.require_lm_eval()
    with pytest.raises(LmEvalUnavailable):
        lm_eval_tasks.run_lm_eval(setup["root"], ["piqa"])
    # the CLI refuses before loading anything, with exit code 2 and the reason
    assert main(["eval", str(setup["ckpt"]), "--tasks", "arc_easy"]) == 2
    assert "lm-eval" in caplog.text and "Hugging Face Hub" in caplog.text


def test_hf_model_for_lm_eval_has_a_matching_tokenizer(setup, tmp_path):
    transformers = pytest.importorskip("transformers")
    hf_dir = lm_eval_tasks.write_hf_model(setup["params"], setup["cfg"], tmp_path / "hf",
                                          tokenizer_path=setup["root"] / "tokenizer.json", eos_id=0)
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["vocab_size"] == setup["cfg"].vocab_size and config["eos_token_id"] == 0
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    text = "the lazy fox exchanges sparse gradients"
    assert hf_tok(text)["input_ids"] == load_tokenizer(setup["root"] / "tokenizer.json").encode(text).ids
    assert hf_tok.eos_token == "<eos>" and hf_tok.pad_token_id == 0
