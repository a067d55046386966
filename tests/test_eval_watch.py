"""`templar-jax eval --watch` (issue 23): the evaluator follows the leader's published checkpoints,
evaluates each once, keeps a JSONL history that survives restarts, and exports metrics."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from templar_jax.checkpoint.bootstrap import save_and_publish
from templar_jax.checkpoint.local import LocalCheckpoints
from templar_jax.cli import main
from templar_jax.config import load_run_config
from templar_jax.data import write_shard
from templar_jax.data.manifest import build_manifest, write_manifest
from templar_jax.evaluate import EvalError
from templar_jax.evaluate.history import EvalHistory
from templar_jax.evaluate.watch_metrics import EvalMetrics
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.storage import Bucket
from templar_jax.storage.keys import checkpoint_prefix

L = 128


@pytest.fixture(scope="module")
def heldout(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "heldout"
    folder.mkdir()
    tokens = np.random.default_rng(0).integers(1, 4096, size=4 * L).astype(np.uint32)
    write_shard(folder, 0, tokens, L)
    write_manifest(folder, build_manifest(folder, L, [(0, 4)], eos_id=0, vocab_size=4096))
    return folder.parent


@pytest.fixture(scope="module")
def params():
    return GlobalModel(load_run_config("demo"), pad_id=0).init_params()


def _publish(bucket, tmp_path, params, window: int, scale: float) -> None:
    moved = jax.tree.map(lambda p: p * scale, params)  # a different model per checkpoint
    with LocalCheckpoints(tmp_path / "leader-ckpts", max_to_keep=None, async_save=False) as ckpts:
        save_and_publish(ckpts, bucket, version="demo", window=window, params=moved, global_step=window // 5)


def _watch(leader_url: str, data, history) -> int:
    return main(["eval", "--watch", leader_url, "--config", "demo", "--data", str(data), "--history", str(history),
                 "--polls", "1", "--poll-s", "0", "--batch-size", "4", "--batches", "1"])


def test_each_published_checkpoint_is_evaluated_once_across_a_restart(tmp_path, heldout, params):
    url = f"file://{tmp_path / 'leader'}"
    leader = Bucket.open(url)
    history = tmp_path / "watch" / "history.jsonl"
    _publish(leader, tmp_path, params, 5, 1.0)
    _publish(leader, tmp_path, params, 10, 1.5)
    # a checkpoint still being published (files, no manifest yet) waits for a later poll
    leader.put(checkpoint_prefix("demo", 15) + "params/partial", b"x")

    assert _watch(url, heldout, history) == 0
    assert [r["window"] for r in EvalHistory(history).records] == [5, 10]

    _publish(leader, tmp_path, params, 15, 2.0)  # its manifest lands: complete now
    assert _watch(url, heldout, history) == 0  # a restart: 5 and 10 are not evaluated again
    assert _watch(url, heldout, history) == 0  # nothing new: nothing appended

    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["window"] for r in records] == [5, 10, 15]
    assert [r["global_step"] for r in records] == [1, 2, 3]
    losses = [r["heldout"]["loss"] for r in records]
    assert len(set(losses)) == 3 and all(np.isfinite(losses))
    assert all(r["heldout"]["n_samples"] == 4 and "error" not in r for r in records)
    assert not list((history.parent / "checkpoints").iterdir())  # local copies deleted after use

    metrics = EvalMetrics()
    for r in records:
        metrics(r)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    assert families["templar_eval_window"].samples[0].value == 15
    assert families["templar_eval_heldout_loss"].samples[0].value == pytest.approx(losses[-1])
    ok = [s for s in families["templar_eval_checkpoints"].samples if s.name == "templar_eval_checkpoints_total"]
    assert [(s.labels["outcome"], s.value) for s in ok] == [("ok", 3.0)]


def test_a_checkpoint_failing_verification_is_recorded_once_as_an_error(tmp_path, heldout, params):
    url = f"file://{tmp_path / 'leader'}"
    leader = Bucket.open(url)
    _publish(leader, tmp_path, params, 5, 1.0)
    prefix = checkpoint_prefix("demo", 5)
    manifest = json.loads(leader.get(prefix + "_MANIFEST.json"))
    victim = manifest["files"][0]["path"]
    leader.put(prefix + victim, b"tampered")  # not what the manifest's sha256 says
    history = tmp_path / "history.jsonl"
    assert _watch(url, heldout, history) == 0
    assert _watch(url, heldout, history) == 0
    records = EvalHistory(history).records
    assert len(records) == 1 and records[0]["window"] == 5 and "size/sha256" in records[0]["error"]


def test_history_drops_a_line_cut_short_by_a_crash(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"window": 5, "heldout": {"loss": 1.0}}\n{"window": 10, "heldo')
    history = EvalHistory(path)
    assert history.windows == {5}  # window 10 is evaluated again, not skipped
    history.append({"window": 10, "heldout": {"loss": float("nan")}})
    assert [json.loads(x)["window"] for x in path.read_text().splitlines()] == [5, 10]
    assert EvalHistory(path).records[1]["heldout"]["loss"] is None
    path.write_text("not json\n")
    with pytest.raises(EvalError, match="history.jsonl:1: not an evaluation record"):
        EvalHistory(path)


def test_a_chain_error_looking_up_the_leader_ends_the_poll_not_the_service(tmp_path):
    from templar_jax.chain.errors import ChainUnavailableError
    from templar_jax.evaluate.watch import CheckpointWatcher

    def leader():
        raise ChainUnavailableError("node unreachable")

    def evaluate(root, window):
        raise AssertionError("nothing to evaluate")

    history = EvalHistory(tmp_path / "history.jsonl")
    watcher = CheckpointWatcher(leader, "demo", history, evaluate, tmp_path / "checkpoints")
    assert watcher.poll() == [] and watcher.run(poll_s=0, max_polls=2) == 0
    assert history.records == []


def test_evaluation_data_trouble_is_retried_next_poll_not_recorded(tmp_path, params):
    from templar_jax.data.errors import ShardFetchError
    from templar_jax.evaluate.watch import CheckpointWatcher

    leader = Bucket.open(f"file://{tmp_path / 'leader'}")
    _publish(leader, tmp_path, params, 5, 1.0)
    calls = []

    def evaluate(root, window):
        calls.append(window)
        if len(calls) == 1:
            raise ShardFetchError("heldout/train_000000.npy: download failed")
        return {"heldout": {"loss": 1.0}}

    history = EvalHistory(tmp_path / "history.jsonl")
    watcher = CheckpointWatcher(lambda: leader, "demo", history, evaluate, tmp_path / "checkpoints")
    assert watcher.poll() == [] and history.records == []  # no error record: the checkpoint is not at fault
    assert [r["window"] for r in watcher.poll()] == [5] and calls == [5, 5]
    assert "error" not in history.records[0]


def test_watch_names_a_metrics_port_it_cannot_listen_on(tmp_path, heldout, caplog):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["eval", "--watch", f"file://{tmp_path / 'leader'}", "--config", "demo", "--data", str(heldout),
                     "--history", str(tmp_path / "history.jsonl"), "--polls", "1", "--poll-s", "0",
                     "--metrics-port", str(port)]) == 1
    assert f"metrics.port={port}" in caplog.text and "cannot listen there" in caplog.text


def test_a_restart_replays_records_whose_nan_metrics_were_written_as_null(tmp_path):
    history = EvalHistory(tmp_path / "history.jsonl")
    history.append({"window": 5, "heldout": {"loss": 2.0}, "lm_eval": {"hellaswag": {"acc": 0.25, "acc_stderr": float("nan")}}})
    metrics = EvalMetrics()
    for record in EvalHistory(tmp_path / "history.jsonl").records:  # what `eval --watch` does on a restart
        metrics(record)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    assert [(s.labels["metric"], s.value) for s in families["templar_eval_lm_eval"].samples] == [("acc", 0.25)]


def test_watch_needs_a_config_and_no_checkpoint_argument(tmp_path):
    assert main(["eval", "--watch", f"file://{tmp_path}"]) == 2
    assert main(["eval", str(tmp_path), "--watch", f"file://{tmp_path}", "--config", "demo"]) == 2


def test_watch_chain_follows_the_leader_the_chain_names(tmp_path, heldout, params):
    from templar_jax.chain.local import LocalChain
    from templar_jax.neurons.network import open_my_bucket, publish_access

    chain_path = tmp_path / "chain.sqlite"
    LocalChain.create(chain_path, block_time=1.0, blocks_per_window=10)
    for hotkey, stake in (("miner-0", 0.0), ("validator-1", 1000.0)):
        me = LocalChain(chain_path, hotkey=hotkey)
        me.register(hotkey, stake=stake)
        bucket, access = open_my_bucket(f"file://{tmp_path / hotkey}")
        publish_access(me, access)
    _publish(bucket, tmp_path, params, 5, 1.0)  # the validator's bucket: the leader's
    history = tmp_path / "history.jsonl"
    rc = main(["eval", "--watch", "chain", "--config", "demo", "--set", f"chain.network={chain_path}",
               "--data", str(heldout), "--history", str(history), "--polls", "1", "--poll-s", "0",
               "--batch-size", "4", "--batches", "1", "--metrics-port", "0"])  # served while it runs
    assert rc == 0 and [r["window"] for r in EvalHistory(history).records] == [5]


def test_checkpoints_are_restored_sharded_over_the_run_config_mesh(tmp_path, heldout, params):
    from templar_jax.evaluate import open_eval_data
    from templar_jax.evaluate.load import load_checkpoint
    from templar_jax.evaluate.watch import checkpoint_evaluator
    from templar_jax.model import load_model_config
    from templar_jax.neurons.mesh import neuron_mesh

    _publish(Bucket.open(f"file://{tmp_path / 'leader'}"), tmp_path, params, 5, 1.0)
    root, cfg = tmp_path / "leader-ckpts", load_model_config("tiny")
    mesh = neuron_mesh("auto")
    assert mesh is not None and mesh.devices.size == len(jax.devices()) > 1
    loaded = load_checkpoint(root, step=5, model=cfg, mesh=mesh)
    emb = loaded.params["embed"]["embedding"]
    assert emb.sharding.mesh == mesh and len(emb.sharding.device_set) == mesh.devices.size
    data = open_eval_data(str(heldout), seq_len=L)
    sharded = checkpoint_evaluator(cfg, data, batch_size=4, mesh=mesh)(root, 5)["heldout"]["loss"]
    single = checkpoint_evaluator(cfg, data, batch_size=4)(root, 5)["heldout"]["loss"]
    assert sharded == pytest.approx(single, rel=1e-5)
    with pytest.raises(EvalError, match="needs the model config"):
        load_checkpoint(root, step=5, mesh=mesh)
