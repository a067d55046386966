"""Neurons train from shards in a bucket (issue 23): a miner and a validator reading the local GCS
server's bucket agree bit for bit with the same pair reading the same shards from disk. Two
windows with the shard schedule at one outer step per shard, so window 0 samples shard 0 and
window 1 shard 1 (both downloaded, hash-checked, the second prefetched).

The clock is a stand-in that says "now is window W" and never waits (timing is not what is
tested here), and the evaluation draw is pinned so both validators pick the same samples."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest

from templar_jax.chain.local import LocalChain
from templar_jax.config import load_run_config
from templar_jax.data import ShardDataset, miner_pool, sample_digest, write_shard
from templar_jax.data.manifest import build_manifest, write_manifest
from templar_jax.data.upload import upload_shard_sets
from templar_jax.events import EventLog, read_all_events
from templar_jax.gauntlet import draw
from templar_jax.neurons.clock import WindowClock, WindowPhases
from templar_jax.neurons.common import NeuronParts
from templar_jax.neurons.datasets import open_datasets
from templar_jax.neurons.miner import Miner
from templar_jax.neurons.network import PeerDirectory, open_my_bucket, publish_access
from templar_jax.neurons.validator import Validator
from templar_jax.protocol.global_model import GlobalModel
from templar_jax.storage import Bucket
from templar_jax.storage.keys import gradient_key

pytest_plugins = ["tests.servers"]

L, COUNTS, EOS = 128, (24, 20), 0
OVERRIDES = ["inner.steps=2", "run.null_rounds=0", "run.resume_interval_windows=0", "peers.gather=2",
             "peers.reserve=1", "data.outer_steps_per_shard=1", f"data.seq_len={L}"]


class NowClock(WindowClock):
    """`current_window()` is what the test sets; no deadline, every upload time accepted, no waits."""

    def __init__(self, chain):
        super().__init__(chain, upload_span_s=1.0)
        self.window = 0
        self.now = time.time

    def current_window(self) -> int:
        return self.window

    def phases(self, window: int) -> WindowPhases:
        return WindowPhases(window, 0.0, float("inf"), 0.0, float("inf"), 0.0)

    def wait_for_window(self, window: int) -> None:
        pass


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """train/ (2 shards) + heldout/ (1 shard) of random tokens below the tiny model's vocab, with EOS."""
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(23)
    for split, counts in (("train", COUNTS), ("heldout", (8,))):
        folder = root / split
        folder.mkdir()
        for i, n in enumerate(counts):
            tokens = rng.integers(1, 4096, size=n * L).astype(np.uint32)
            tokens[rng.random(tokens.size) < 0.02] = EOS
            write_shard(folder, i, tokens, L)
        write_manifest(folder, build_manifest(folder, L, list(enumerate(counts)), eos_id=EOS, vocab_size=4096))
    return root


def _train_two_windows(tmp, data_path: str, cache_dir, model: GlobalModel | None = None, programs=None):
    """Miner uid 1 and validator uid 0 through windows 0 and 1 reading `data_path`. `model` and
    `programs` (a miner's trainer and SparseLoCo transform: stateless holders of jitted programs)
    come from an earlier run so the second run does not compile them again."""
    cfg = load_run_config("demo", OVERRIDES + [f"data.path={data_path}", f"data.cache_dir={cache_dir}"])
    tmp.mkdir(parents=True)
    chain_path = tmp / "chain.sqlite"
    LocalChain.create(chain_path, block_time=1.0, blocks_per_window=10, genesis_time=time.time())
    run_dir = tmp / "run"
    model = model or GlobalModel(cfg, pad_id=EOS)

    def parts(hotkey: str, role: str, stake: float) -> NeuronParts:
        me = LocalChain(chain_path, hotkey=hotkey)
        uid = me.register(hotkey, stake=stake)
        bucket, access = open_my_bucket(f"file://{tmp / 'buckets' / hotkey}")
        publish_access(me, access)
        data = open_datasets(cfg.data)  # each neuron opens the data itself, as in a real run
        assert data.pad_id == EOS
        return NeuronParts(cfg=cfg, hotkey=hotkey, uid=uid, run_dir=run_dir, chain=me, bucket=bucket,
                           peers=PeerDirectory(me), data=data, model=model, clock=NowClock(me),
                           events=EventLog(run_dir, role, uid))

    validator = Validator(parts("validator-0", "validator", 1000.0))
    miner = Miner(parts("miner-1", "miner", 0.0))
    if programs is not None:
        miner.trainer, miner.tx = programs
    validator.eval_draw = lambda window: draw(b"pinned-secret", window, 0, "0x00", 0)
    state, params = miner.start_state(0, 0), model.init_params()
    for window in (0, 1):
        miner.clock.window = validator.clock.window = window
        state = miner.step_window(state, window, start=0)
        params = validator.process_window(params, window, start=0)
    events = read_all_events(run_dir)
    payloads = [miner.bucket.get(gradient_key(w, miner.uid, cfg.run.version)) for w in (0, 1)]
    return SimpleNamespace(cfg=cfg, model=model, miner=miner, payloads=payloads,
                           mine=[e for e in events if e["event"] == "window"],
                           scores=[e for e in events if e["event"] == "scores"],
                           digest=model.params_digest(params))


@pytest.mark.slow  # ~45 s of CPU, most of it compiling the miner's and the validator's programs once
def test_miner_and_validator_from_gcs_match_disk_bit_for_bit(shards, gcs_server, tmp_path):
    url = f"gs://{gcs_server.new_bucket()}/corpus/v1"
    stats = upload_shard_sets(shards, Bucket.open(url))
    assert stats.objects == 2 * 2 + 2 + 2  # train: 2 shards x 2 files + manifest; heldout: 1 x 2 + manifest

    remote = _train_two_windows(tmp_path / "gcs", url, tmp_path / "cache")
    local = _train_two_windows(tmp_path / "disk", str(shards), tmp_path / "unused", remote.model,
                               (remote.miner.trainer, remote.miner.tx))

    for r in (remote, local):
        assert [e["status"] for e in r.mine] == ["ok", "ok"] and [e["gathered"] for e in r.mine] == [[1], [1]]
        assert r.mine[-1]["params_digest"] == r.scores[-1]["params_digest"] == r.digest  # miner = validator
        assert all(s["uids"]["1"]["evaluated"] for s in r.scores)
    assert remote.payloads == local.payloads  # byte for byte
    assert remote.digest == local.digest
    for a, b in zip(remote.mine, local.mine):
        assert (a["train_loss"], a["params_digest"]) == (b["train_loss"], b["params_digest"])
    for a, b in zip(remote.scores, local.scores):
        assert a["uids"]["1"] == b["uids"]["1"] and a["heldout_loss"] == b["heldout_loss"] is not None

    # the schedule: window w's pool is drawn from shard w alone
    inner = remote.cfg.inner
    for w, payload in enumerate(remote.payloads):
        shard = ShardDataset(shards / "train", L).shard_view(w)
        pool = miner_pool(1, w, shard.n_samples, inner.steps, inner.target_batch)
        _, meta = remote.model.codec.decode(payload, expected_meta={"window": w, "uid": 1,
                                                                    "version": remote.cfg.run.version})
        assert meta["sample_digest"] == sample_digest(shard.ids(pool))
    for name in ("train/train_000000.npy", "train/train_000001.npy", "heldout/train_000000.npy"):
        assert (tmp_path / "cache" / name).is_file()
    assert not list((tmp_path / "cache").rglob("*.partial"))
