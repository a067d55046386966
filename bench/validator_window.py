"""Validator window benchmark: peak RSS and time per phase over N synthetic miners.

Each (mode, N) runs in its own process: a LocalChain with N miners whose file buckets hold
random (valid, untrained) payloads for two windows; the validator runs `process_window` on the
first (warm-up: every program compiles), the kernel's peak-RSS mark is reset
(/proc/self/clear_refs), and the second window is measured. Modes:
  spool   the validator as it runs: accepted payloads wait on local disk, read back one tensor
          at a time (neurons/spool.py)
  memory  the same window with every miner's payload decoded in memory (the path before the
          spool; the miners' path), as the baseline
Peak RSS is VmHWM over the measured window; `model` is the RSS before it (params, compiled
programs, runtime), so `peak - model` is what the window itself adds. The model's own footprint
in a window is the peak of the same window with one miner (`--miners 1,...`: theta0, the
evaluated theta_u, the aggregate and the new params, all model-sized, and one payload); the
table gives each row's growth over the mode's first N in decoded payloads (`decoded`: the arrays
of one miner's decoded payload).

    python bench/validator_window.py [--miners 2,8,32] [--modes spool,memory] [--preset 150m]
                                     [--eval-uids 2] [--eval-sequences 2] [--gather 20]
                                     [--in-flight 4] [--workers 2] [--copy-sketch 0]
                                     [--checkpoint-interval 0] [--publish-wait] [--trim]
                                     [--aggregate streamed|stacked] [--lock FILE]
Prints a table (peak RSS and its ratio to the same mode's first N; time per phase) and one JSON
line per row. With `--checkpoint-interval 1` both windows save and publish a checkpoint: the
publish phase saves it locally and the upload runs in the background (`upload after` is how long
it went on after the window); `--publish-wait` keeps the upload inside the phase, as before.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PHASES = ("gather", "score", "outer_step", "publish", "report")  # the validator's own `_timed` phases
BLOCK_S = 1.0
BLOCKS_PER_WINDOW = 2
UPLOAD_SPAN_S = 1.0


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


def _overrides(args) -> list[str]:
    return [f"model.preset={args.preset}", "data.seq_len=64", f"validator.eval_sequences={args.eval_sequences}",
            f"validator.eval_uids_per_window={args.eval_uids}",
            f"validator.checkpoint_interval_windows={args.checkpoint_interval}",
            f"peers.gather={args.gather}", "peers.reserve=0", f"peers.upload_window_s={UPLOAD_SPAN_S}",
            "peers.gather_timeout_s=600", f"peers.gather_in_flight={args.in_flight}",
            f"peers.decode_workers={args.workers}", "run.null_rounds=0", "run.resume_interval_windows=0",
            f"validator.copy_sketch_chunks={args.copy_sketch}"]


def child(args) -> dict:
    """One (mode, N) measurement in this process; returns its row."""
    import jax
    import numpy as np

    from templar_jax.chain.local import LocalChain
    from templar_jax.config import load_run_config
    from templar_jax.events import EventLog
    from templar_jax.neurons.clock import WindowClock
    from templar_jax.neurons.common import NeuronParts
    from templar_jax.neurons.datasets import DataSets
    from templar_jax.neurons.network import PeerDirectory, open_my_bucket, publish_access
    from templar_jax.neurons.validator import Validator
    from templar_jax.protocol.global_model import GlobalModel
    from templar_jax.storage.keys import gradient_key
    from templar_jax.train.synthetic import RandomRows
    from templar_jax.wire.synthetic import random_payload
    from templar_jax.xla_cache import enable_compilation_cache

    enable_compilation_cache()
    work = Path(args.workdir)
    cfg = load_run_config("demo", _overrides(args))
    model = GlobalModel(cfg, pad_id=None)
    genesis = time.time() - BLOCK_S * BLOCKS_PER_WINDOW - 0.5  # window 1 began 0.5 s ago
    chain = LocalChain.create(work / "chain.sqlite", block_time=BLOCK_S, blocks_per_window=BLOCKS_PER_WINDOW,
                              genesis_time=genesis)
    hotkeys = ["validator-0"] + [f"miner-{i}" for i in range(1, args.miners + 1)]
    buckets = {}
    for i, hk in enumerate(hotkeys):
        chain.register(hk, stake=1000.0 if i == 0 else 0.0)
        buckets[i], access = open_my_bucket(f"file://{work / 'buckets' / hk}")
        publish_access(LocalChain(work / "chain.sqlite", hotkey=hk), access)
    payload_bytes = decoded_bytes = 0
    for uid in range(1, args.miners + 1):  # generated, not trained; freed before the measurement
        for window in (0, 1):  # a fresh payload each window (the same one twice is a stale copy)
            payload = random_payload(np.random.default_rng([uid, window]), model.expected)
            data = model.codec.encode(payload, {"window": window, "uid": uid, "version": model.version})
            buckets[uid].put(gradient_key(window, uid, model.version), data)
            inside = genesis + BLOCK_S * BLOCKS_PER_WINDOW * (window + 1) + 0.1  # in the upload window
            os.utime(work / "buckets" / hotkeys[uid] / gradient_key(window, uid, model.version), (inside, inside))
            payload_bytes = len(data)
        if uid == 1:  # one decoded payload's arrays, as the wire decoder returns them
            decoded_bytes = sum(np.asarray(a).nbytes for tp in model.codec.decode(data)[0].values() for a in tp)
        del payload, data
    me = LocalChain(work / "chain.sqlite", hotkey="validator-0")
    run_dir = work / "run"
    parts = NeuronParts(cfg=cfg, hotkey="validator-0", uid=0, run_dir=run_dir, chain=me, bucket=buckets[0],
                        peers=PeerDirectory(me),
                        data=DataSets(RandomRows(cfg.data.seq_len, model.cfg.vocab_size), None, None),
                        model=model, clock=WindowClock(me, upload_span_s=UPLOAD_SPAN_S),
                        events=EventLog(run_dir, "validator", 0))
    validator = Validator(parts)
    if args.mode == "memory":  # every payload decoded in memory, as before the spool
        gather = validator.gather
        validator.gather = lambda *a, spool=None, **kw: gather(*a, **kw)
    seconds, peaks_kb, peak_outside = dict.fromkeys(PHASES, 0.0), dict.fromkeys(PHASES, 0), [0]
    phase_of = validator._timed

    def timed(window, phase, run):
        """Each phase's time and its own peak RSS (the mark is reset at its start; the peak
        between phases is kept apart, so the window's peak is the max of both). The phase's
        arrays are waited for (jax dispatches asynchronously: the outer step's work would
        otherwise land in whatever reads its result next)."""
        name = phase.removeprefix("validator_")
        peak_outside[0] = max(peak_outside[0], _status_kb("VmHWM"))
        _reset_peak()
        t = time.perf_counter()
        try:
            return phase_of(window, phase, lambda: jax.block_until_ready(run()))
        finally:
            seconds[name] += time.perf_counter() - t
            peaks_kb[name] = max(peaks_kb[name], _status_kb("VmHWM"))
            _reset_peak()

    validator._timed = timed
    if args.aggregate == "stacked":  # the outer step as before: every peer's slice of a tensor stacked in one program
        model.aggregate_streamed = model.aggregate
    if args.publish_wait:  # the checkpoint upload inside the publish phase, as before the background publisher
        publish = validator._publish
        validator._publish = lambda *a, **kw: (publish(*a, **kw), validator.publisher.wait())[0]

    theta0 = model.init_params()
    params = validator.process_window(theta0, 0, start=0)  # warm-up: compiles every program
    del params
    gc.collect()
    if args.trim:  # glibc keeps freed heap; give it back so `model` is what the process holds
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    seconds.update(dict.fromkeys(PHASES, 0.0))
    peaks_kb.update(dict.fromkeys(PHASES, 0))
    model_kb = _status_kb("VmRSS")
    _reset_peak()
    peak_outside[0] = 0
    t = time.perf_counter()
    validator.process_window(theta0, 1, start=0)
    wall = time.perf_counter() - t
    t = time.perf_counter()
    validator.publisher.close()  # the checkpoint upload still running after the window, if any
    upload_after = time.perf_counter() - t
    peak_kb = max(_status_kb("VmHWM"), peak_outside[0], *peaks_kb.values())
    n_params = sum(int(np.prod(s)) for s in model.shapes_flat.values())
    scored = sum(1 for rec in validator.state.peers.values() if rec.last_eval_window == 1)
    return {"bench": "validator_window", "mode": args.mode, "miners": args.miners, "preset": args.preset,
            "params": n_params, "payload_mb": payload_bytes / 1e6, "decoded_mb": decoded_bytes / 1e6,
            "eval_sequences": args.eval_sequences, "evaluated": scored,
            "model_rss_mb": model_kb / 1024, "peak_rss_mb": peak_kb / 1024,
            "window_mb": (peak_kb - model_kb) / 1024, "wall_s": wall,
            "aggregate": args.aggregate, "checkpoint_interval": args.checkpoint_interval, "publish_wait": args.publish_wait, "trim": args.trim,
            "upload_after_window_s": upload_after,
            **{f"{k}_s": v for k, v in seconds.items()}, **{f"{k}_peak_mb": v / 1024 for k, v in peaks_kb.items()}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--miners", default="2,8,32")
    p.add_argument("--modes", default="spool,memory")
    p.add_argument("--preset", default="150m")
    p.add_argument("--eval-uids", type=int, default=2, help="uids evaluated per window (the same for every N)")
    p.add_argument("--eval-sequences", type=int, default=2, help="validator.eval_sequences (of seq_len 64)")
    p.add_argument("--checkpoint-interval", type=int, default=0,
                   help="validator.checkpoint_interval_windows (1: a checkpoint saved and published every window)")
    p.add_argument("--publish-wait", action="store_true",
                   help="the publish phase waits for the checkpoint upload (as before it ran in the background)")
    p.add_argument("--trim", action="store_true", help="malloc_trim(0) before the measured window (glibc)")
    p.add_argument("--aggregate", choices=("streamed", "stacked"), default="streamed",
                   help="the outer step's aggregation: one peer at a time (the validator's) or every peer stacked "
                        "(`GlobalModel.aggregate`, the miners', as the validator did before)")
    p.add_argument("--gather", type=int, default=20, help="peers aggregated (peers.gather)")
    p.add_argument("--in-flight", type=int, default=4, help="peers.gather_in_flight")
    p.add_argument("--workers", type=int, default=2, help="peers.decode_workers")
    p.add_argument("--copy-sketch", type=int, default=0,
                   help="validator.copy_sketch_chunks (0: every pair's full index sets)")
    p.add_argument("--lock", help="run each measured process under `flock LOCK` (a machine shared with other "
                                  "memory-hungry jobs)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="spool", help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.miners = int(args.miners)
        print(json.dumps(child(args)))
        return 0
    rows = []
    for mode in args.modes.split(","):
        for n in [int(x) for x in args.miners.split(",")]:
            with tempfile.TemporaryDirectory(prefix="tjx-validator-window-") as work:
                cmd = [sys.executable, os.path.abspath(__file__), "--child", "--mode", mode, "--miners", str(n),
                       "--workdir", work, "--preset", args.preset, "--eval-uids", str(args.eval_uids),
                       "--eval-sequences", str(args.eval_sequences), "--checkpoint-interval",
                       str(args.checkpoint_interval), *(["--publish-wait"] if args.publish_wait else []),
                       *(["--trim"] if args.trim else []), "--aggregate", args.aggregate,
                       "--gather", str(args.gather), "--in-flight", str(args.in_flight),
                       "--workers", str(args.workers), "--copy-sketch", str(args.copy_sketch)]
                out = subprocess.run((["flock", args.lock] if args.lock else []) + cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stderr[-3000:], file=sys.stderr)
                return 1
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    first = {}
    print(f"\n{rows[0]['preset']}: {rows[0]['params'] / 1e6:.0f}M params, payload {rows[0]['payload_mb']:.1f} MB "
          f"on the wire, {rows[0]['decoded_mb']:.1f} MB decoded; {args.eval_uids} uids evaluated on "
          f"{args.eval_sequences} x 64 tokens, {args.gather} aggregated at most, "
          f"{args.in_flight} in flight, {args.workers} decode workers, copy detection "
          + (f"from {args.copy_sketch}-row sketches" if args.copy_sketch else "on full index sets"))
    print("peak = VmHWM over the measured window; model = RSS before it; window = peak - model; "
          "x N0: ratio to the mode's first N; +dec: (peak - first N's peak) in decoded payloads; "
          "at: the phase that holds the peak")
    print(f"{'mode':7} {'N':>3} {'model MB':>9} {'peak MB':>8} {'x N0':>5} {'+dec':>5} {'window MB':>9} {'x N0':>5} "
          f"{'at':>10} {'wall s':>7} "
          + " ".join(f"{p + ' s':>12}" for p in PHASES) + f" {'upload after s':>14}")
    for r in rows:
        base = first.setdefault(r["mode"], r)
        print(f"{r['mode']:7} {r['miners']:>3} {r['model_rss_mb']:>9.0f} {r['peak_rss_mb']:>8.0f} "
              f"{r['peak_rss_mb'] / base['peak_rss_mb']:>5.2f} "
              f"{(r['peak_rss_mb'] - base['peak_rss_mb']) * 1.048576 / r['decoded_mb']:>5.2f} {r['window_mb']:>9.0f} "
              f"{r['window_mb'] / max(base['window_mb'], 1.0):>5.2f} "
              f"{max(PHASES, key=lambda p: r[p + '_peak_mb']):>10} {r['wall_s']:>7.1f} "
              + " ".join(f"{r[p + '_s']:>12.2f}" for p in PHASES) + f" {r['upload_after_window_s']:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
