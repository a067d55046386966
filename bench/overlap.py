"""Does a concurrent exchange stall the inner steps? (issue 20, overlapped outer steps)

    python bench/overlap.py                       # the demo's run config (tiny model), 20 peers
    python bench/overlap.py --peers 8 --steps 30 --set model.preset=small

Times the miner's jitted inner step alone, then again while a background thread runs, back to
back, what the overlap's comm thread does for a window: gather every peer's payload from file
buckets (read, validate, decode), aggregate them and apply the outer step. Also times that
exchange alone and beside the steps. Prints a table with the ratios and one JSON line (prefix
"JSON "). The first step and the first exchange (compilation) are excluded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="demo", help="run config name or YAML path")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--peers", type=int, default=20, help="payloads gathered per exchange")
    p.add_argument("--steps", type=int, default=20, help="timed inner steps per phase")
    args = p.parse_args(argv)

    import jax
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from templar_jax.config import load_run_config
    from templar_jax.neurons.exchange import gather_window
    from templar_jax.neurons.miner import inner_trainer
    from templar_jax.neurons.network import open_my_bucket
    from templar_jax.protocol.global_model import GlobalModel
    from templar_jax.storage.keys import gradient_key
    from templar_jax.storage.timing import UploadWindow
    from templar_jax.train.loop import run_steps
    from templar_jax.wire.synthetic import random_payload

    cfg = load_run_config(args.config, args.overrides)
    model = GlobalModel(cfg, pad_id=None)
    trainer = inner_trainer(model)
    params = model.init_params()
    theta0 = jax.tree.map(lambda x: x.copy(), params)
    opt = trainer.init(params)
    rng = np.random.default_rng(0)
    vocab, seq = model.cfg.vocab_size, cfg.data.seq_len
    batches = [rng.integers(0, vocab, (cfg.inner.batch, seq), dtype=np.int32) for _ in range(args.steps + 1)]
    slc = cfg.sparseloco

    tmp = Path(tempfile.mkdtemp(prefix="bench-overlap-"))
    buckets = {}
    for uid in range(args.peers):
        bucket, _ = open_my_bucket(f"file://{tmp / str(uid)}")
        payload = random_payload(rng, model.expected, chunk=slc.chunk, topk=slc.topk)
        bucket.put(gradient_key(0, uid, model.version),
                   model.codec.encode(payload, {"window": 0, "uid": uid, "version": model.version}))
        buckets[uid] = bucket
    anytime = UploadWindow(0.0, float("inf"))

    def exchange() -> float:
        t0 = time.perf_counter()
        got = gather_window(0, list(buckets), buckets, upload=anytime, version=model.version,
                            codec=model.codec, deadline_s=cfg.peers.gather_timeout_s + 30)
        assert len(got.valid) == args.peers, got.failed
        jax.block_until_ready(model.outer_step(theta0, [got.valid[u] for u in sorted(got.valid)]))
        return time.perf_counter() - t0

    def steps() -> list[float]:
        nonlocal params, opt
        out = run_steps(trainer.step, params, opt, batches[1:], put_batch=jax.numpy.asarray)
        params, opt = out.params, out.opt_state
        return [r.seconds for r in out.records]

    params, opt, _ = trainer.run(params, opt, batches[:1])  # compile the step
    exchange()  # compile aggregation + outer step
    alone = steps()
    exchange_alone = [exchange() for _ in range(3)]

    stop = threading.Event()
    beside: list[float] = []

    def loop():
        while not stop.is_set():
            beside.append(exchange())

    thread = threading.Thread(target=loop, name="comm")
    thread.start()
    time.sleep(0.05)
    with_comm = steps()
    stop.set()
    thread.join()

    a, b = statistics.median(alone), statistics.median(with_comm)
    ea, eb = statistics.median(exchange_alone), statistics.median(beside) if beside else float("nan")
    table = Table(title=f"{cfg.model.preset} model, {args.peers} peers, {jax.device_count()} "
                        f"{jax.devices()[0].platform} device(s); medians")
    for col in ("what", "alone", "beside the other", "ratio"):
        table.add_column(col, justify="left" if col == "what" else "right")
    table.add_row(f"inner step ({args.steps} steps)", f"{a * 1e3:.1f} ms", f"{b * 1e3:.1f} ms", f"{b / a:.2f}")
    table.add_row(f"exchange (gather + decode + aggregate + outer step; {len(beside)} beside)",
                  f"{ea * 1e3:.1f} ms", f"{eb * 1e3:.1f} ms", f"{eb / ea:.2f}")
    Console().print(table)
    print("JSON " + json.dumps({"model": cfg.model.preset, "peers": args.peers, "steps": args.steps,
                                "step_s_alone": a, "step_s_with_exchange": b, "step_ratio": b / a,
                                "exchange_s_alone": ea, "exchange_s_beside_steps": eb,
                                "exchanges_beside": len(beside)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
