"""Many real processes on one LocalChain file: no lost writes, no lock errors, one clock."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from templar_jax.chain import LocalChain

N_WORKERS = 6
ROUNDS = 40
MINERS_PER_WORKER = 3

# Each worker: register itself (with stake) and a few miners, then hammer commits and
# set_weights, reading the metagraph in between. All say "ready", then start on "go".
WRITER = r"""
import json, sys, time
from templar_jax.chain import LocalChain
db, index, rounds, n_miners = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
hotkey = f"validator-{index}"
chain = LocalChain(db, hotkey=hotkey)
print("ready", flush=True)
sys.stdin.readline()
t0 = time.time()
uid = chain.register(hotkey, stake=100.0 * (index + 1))
miners = [chain.register(f"miner-{index}-{j}") for j in range(n_miners)]
last = None
for r in range(rounds):
    chain.commit(f"{hotkey}:{r}:" + "s" * 40)
    known = chain.metagraph().uids
    targets = [u for u in known if u != uid][: 4 + (r + index) % 5]
    weights = [float((t * 7 + r + index) % 11 + 1) for t in targets]
    chain.set_weights(targets, weights)
    total = sum(weights)
    last = {str(t): w / total for t, w in zip(targets, weights)}
assert chain.register(hotkey) == uid
print(json.dumps({"span": [t0, time.time()], "uid": uid, "miners": miners, "last_weights": last}))
"""

# Each reader: sample (time before, time after, block, timestamp(block)) in clock mode, then wait for a
# manual chain to reach block 5 and report what it sees there.
READER = r"""
import json, sys, time
from templar_jax.chain import LocalChain
clock_db, manual_db = sys.argv[1], sys.argv[2]
chain = LocalChain(clock_db)
samples = []
for _ in range(30):
    before = time.time()
    b = chain.current_block()
    after = time.time()
    samples.append([before, after, b, chain.block_timestamp(b)])
    time.sleep(0.005)
manual = LocalChain(manual_db)
head = manual.wait_for_block(5, timeout=60)
print(json.dumps({"genesis": chain.genesis_time, "samples": samples, "head": head,
                  "ts5": manual.block_timestamp(5), "window": manual.current_window()}))
"""


def _spawn(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _finish(procs, timeout=90):
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"worker failed:\n{err}"
        assert "locked" not in err.lower(), err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_concurrent_writers_lose_nothing(tmp_path):
    db = tmp_path / "chain.db"
    chain = LocalChain.create(db, block_time=1.0, blocks_per_window=10)
    procs = [_spawn(WRITER, db, i, ROUNDS, MINERS_PER_WORKER) for i in range(N_WORKERS)]
    for p in procs:  # every interpreter is up and has the file open before the rush
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = _finish(procs)
    spans = sorted(r["span"] for r in results)
    assert any(a[1] > b[0] for a, b in zip(spans, spans[1:])), "workers never overlapped"

    mg = chain.metagraph()
    n_expected = N_WORKERS * (1 + MINERS_PER_WORKER)
    assert mg.uids == tuple(range(n_expected))  # dense, unique uids: no lost registration
    assert len(set(mg.hotkeys)) == n_expected
    commitments = chain.commitments()
    weights = chain.weights()
    for i, res in enumerate(results):
        uid = res["uid"]
        assert mg.hotkeys[uid] == f"validator-{i}"
        assert mg.stake[uid] == 100.0 * (i + 1)
        assert [mg.hotkeys[m] for m in res["miners"]] == [f"miner-{i}-{j}" for j in range(MINERS_PER_WORKER)]
        assert commitments[uid] == f"validator-{i}:{ROUNDS - 1}:" + "s" * 40
        expected = {int(k): v for k, v in res["last_weights"].items()}
        assert weights[uid] == pytest.approx(expected)
    assert mg.leader_uid == results[-1]["uid"]  # highest stake
    assert sum(mg.incentive) == pytest.approx(1.0)


def test_processes_agree_on_blocks_and_time(tmp_path):
    clock_db, manual_db = tmp_path / "clock.db", tmp_path / "manual.db"
    clock = LocalChain.create(clock_db, block_time=0.05, blocks_per_window=4)
    manual = LocalChain.create(manual_db, block_time=1.0, blocks_per_window=4, mode="manual")
    procs = [_spawn(READER, clock_db, manual_db) for _ in range(4)]
    # advance only once every reader is waiting (or about to) on the manual chain
    time.sleep(1.5)
    manual.advance(2)
    time.sleep(0.2)
    manual.advance(3)
    results = _finish(procs)

    for res in results:
        assert res["genesis"] == clock.genesis_time
        for before, after, block, ts in res["samples"]:
            assert ts == clock.block_timestamp(block)  # bit-identical in every process
            # the block read between `before` and `after` is the wall clock's block then
            assert ts <= after + 1e-6
            assert before < ts + clock.block_time + 1e-6
        assert res["head"] == 5 and res["window"] == 1
        assert res["ts5"] == manual.block_timestamp(5)
