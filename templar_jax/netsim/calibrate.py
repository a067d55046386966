"""`--calibrate`: measure the stage costs on this machine with this project's own code.

- train tokens/s: netsim/train_probe.py (the miner's inner loop) in one process, and the host's
  tokens/s with 2 probes per core running at once (processes sharing a host, as in the demo);
- compress, encode, decode, aggregate per parameter: the sparseloco transformation, the wire
  codec and the aggregation on random parameters shaped like the model preset (second call,
  after compilation);
- apply: the outer step plus a resume checkpoint (params, two optimizer moments, error
  feedback) saved with orbax, as the miner does every window;
- aggregate first use: the run's outer step (protocol/global_model.py) at a padded peer count
  once more after dropping the in-memory compiled programs, minus a warm call: what a neuron
  pays the first time it applies a count whose bucket it has not compiled (the programs come
  from the persistent XLA cache, which the neurons and this calibration turn on);
- rebase: sparseloco.rebase (the overlapped miner's landing of a new global model);
- store request: one write + read of a payload-sized file (the demo's file buckets).
Meant for small presets (tiny, 150m) on the current machine; a 72B calibration is written by hand
from measured anchors (see docs/results.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from templar_jax.config import RunConfig
from templar_jax.netsim.calibration import FIGURES, Figure, StageCosts


class CalibrationRunError(RuntimeError):
    """A bench the calibration needs could not run; the message says which and why."""


def _best(fn, repeats: int = 3) -> float:
    fn()  # compile / warm caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _train_probes(cfg: RunConfig, copies: int, steps: int, start_at: float = 0.0) -> list[dict]:
    """`copies` train probes (netsim/train_probe.py) run at once; one JSON result per process."""
    cmd = [sys.executable, "-m", "templar_jax.netsim.train_probe", "--model", cfg.model.preset,
           "--batch", str(cfg.inner.batch), "--seq-len", str(cfg.data.seq_len), "--steps", str(steps),
           "--start-at", str(start_at)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(copies)]
    results = []
    for proc in procs:
        out, err = proc.communicate()
        line = next((ln for ln in out.splitlines() if ln.startswith("{")), None)
        if line is None:
            raise CalibrationRunError(f"{' '.join(cmd)} printed no JSON line (rc {proc.returncode}): {err[-400:]}")
        results.append(json.loads(line))
    return results


def host_throughput(results: list[dict]) -> float:
    """Tokens/s of the host while all probes ran: every token over the span from first start to last end."""
    return sum(r["tokens"] for r in results) / (max(r["end"] for r in results) - min(r["start"] for r in results))


def first_use_s(cfg: RunConfig, params, payload, repeats: int = 3) -> float:
    """Seconds the run's outer step takes at a peer count it has not run in this process (trace
    + load from the persistent XLA cache) beyond a warm call; the smallest of `repeats`."""
    import jax

    from templar_jax.protocol.global_model import GlobalModel

    model = GlobalModel(cfg, pad_id=None)

    def outer() -> float:
        t = time.perf_counter()
        jax.block_until_ready(model.outer_step(params, [payload, payload]))
        return time.perf_counter() - t

    outer()  # compiled once and written to the persistent cache
    best = float("inf")
    for _ in range(repeats):
        warm = outer()
        jax.clear_caches()
        best = min(best, outer() - warm)
    return max(0.0, best)


def calibrate(cfg: RunConfig, peers: int = 6) -> StageCosts:
    from templar_jax.xla_cache import enable_compilation_cache

    enable_compilation_cache()  # as the neurons: before the first compile, or jax ignores it
    import jax
    import jax.numpy as jnp
    import numpy as np

    from templar_jax.checkpoint.local import CheckpointMeta, LocalCheckpoints
    from templar_jax.model import flat_param_shapes, load_model_config, param_batch_dims
    from templar_jax.sparseloco import aggregate, outer_step, rebase, sparseloco
    from templar_jax.tree import unflatten_params
    from templar_jax.wire import decode, encode, expected_table

    device = f"{jax.devices()[0].device_kind} x{jax.device_count()} ({os.cpu_count()} host cores)"
    single = _train_probes(cfg, 1, 20)[0]["tokens_per_s"]
    # the host's throughput when several peers share it (the demo's case): 2 processes per core,
    # timed from one instant after every copy has compiled
    copies = 2 * (os.cpu_count() or 1)
    host_tps = host_throughput(_train_probes(cfg, copies, 20, start_at=time.time() + 30 + 10 * copies))
    mcfg = load_model_config(cfg.model.preset)
    shapes, bdims = flat_param_shapes(mcfg), param_batch_dims(mcfg)
    table = expected_table(shapes, batch_dims=bdims)
    n = sum(int(np.prod(s)) for s in shapes.values())
    key = jax.random.PRNGKey(0)
    params = unflatten_params({k: jax.random.normal(jax.random.fold_in(key, i), s, jnp.float32) * 1e-2
                               for i, (k, s) in enumerate(sorted(shapes.items()))})
    sl = cfg.sparseloco
    tx = sparseloco(beta=sl.error_decay, topk=sl.topk, chunk=sl.chunk, batch_dims=bdims)
    ef = tx.init(params)
    delta = jax.tree.map(lambda x: x * 1e-3, params)
    compress_s = _best(lambda: jax.block_until_ready(tx.update(delta, ef)))
    payload, _ = tx.update(delta, ef)
    payload = jax.device_get(payload)
    meta = {"window": 0, "uid": 0}
    kw = dict(index_coding=sl.wire_index_coding, chunk=sl.chunk, topk=sl.topk)
    encode_s = _best(lambda: encode(payload, meta, expected=table, **kw))
    data = encode(payload, meta, expected=table, **kw)
    decode_s = _best(lambda: decode(data, table, chunk=sl.chunk, topk=sl.topk))
    got = [decode(data, table, chunk=sl.chunk, topk=sl.topk)[0]] * peers
    agg_s = _best(lambda: jax.block_until_ready(aggregate(got, params, rule=sl.aggregation_rule, chunk=sl.chunk,
                                                          batch_dims=bdims)))
    first_use = first_use_s(cfg, params, got[0])
    rebase_s = _best(lambda: jax.block_until_ready(rebase(params, delta, params)))
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = LocalCheckpoints(Path(tmp) / "resume", max_to_keep=2)
        meta_ck = CheckpointMeta(window=0, global_step=0, version="calibrate")
        apply_s = float("inf")
        for step in range(4):  # the miner saves asynchronously: time the call, wait outside
            t = time.perf_counter()
            upd = aggregate(got, params, rule=sl.aggregation_rule, chunk=sl.chunk, batch_dims=bdims)
            new = jax.block_until_ready(outer_step(params, upd, sl.outer_lr))
            ckpt.save(step, new, meta=meta_ck, extras={"mu": new, "nu": new, "ef": new})
            if step:
                apply_s = min(apply_s, time.perf_counter() - t - agg_s)
            ckpt.wait()
        path = Path(tmp) / "object"

        def put_get() -> None:
            path.write_bytes(data)
            path.read_bytes()
        store_s = _best(put_get)
    src = f"templar-jax simulate --calibrate ({cfg.model.preset}, {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC)"
    v = {
        "train_tokens_per_s": (single, f"{src}: train_probe (train/loop.py run_steps, one process)"),
        "train_step_overhead_s": (0.0, "included: the probe runs the miner's loop (a host sync per step)"),
        "compress_s_per_param": (compress_s / n, f"{src}: sparseloco update"),
        "encode_s_per_param": (encode_s / n, f"{src}: wire.encode"),
        "decode_s_per_param": (decode_s / n, f"{src}: wire.decode"),
        "aggregate_s_per_param": (agg_s / n / peers, f"{src}: sparseloco.aggregate of {peers} peers"),
        "apply_s": (max(0.0, apply_s), f"{src}: outer step + orbax resume save (async, as the miner)"),
        "aggregate_first_use_s": (first_use, f"{src}: GlobalModel.outer_step of 2 peers after jax.clear_caches()"
                                             " (persistent XLA cache on) minus a warm call"),
        "rebase_s_per_param": (rebase_s / n, f"{src}: sparseloco.rebase"),
        "eval_s_per_token": (1.0 / (3.0 * single), "forward = 1/3 of a train step (derived)"),
        "store_request_s": (store_s, f"{src}: file write + read of one payload"),
        "host_tokens_per_s": (host_tps, f"{src}: train_probe as {copies} processes at once"),
    }
    return StageCosts({k: Figure(float(val), FIGURES[k], s, device) for k, (val, s) in v.items()})
