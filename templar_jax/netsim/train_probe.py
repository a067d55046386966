"""Train-throughput probe for `simulate --calibrate`: the project's inner loop (train/loop.py
run_steps, which waits for every step as the miner does) on random tokens, timed from a given
unix instant so that several probes started together measure a shared host at the same time.

    python -m templar_jax.netsim.train_probe --model tiny --batch 8 --seq-len 128 --steps 20 --start-at T

prints one JSON line: {"tokens": ..., "seconds": ..., "tokens_per_s": ..., "device_kind": ...}.
"""

from __future__ import annotations

import argparse
import json
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--start-at", type=float, default=0.0, help="unix time to start the timed steps at")
    args = ap.parse_args(argv)

    import jax
    import numpy as np

    from templar_jax.model import init_params, load_model_config
    from templar_jax.model.sharding import make_mesh
    from templar_jax.train import TrainConfig, init_opt_state, make_inner_optimizer, make_train_step
    from templar_jax.train.loop import run_steps

    cfg = load_model_config(args.model)
    mesh = make_mesh(None)
    optimizer = make_inner_optimizer(TrainConfig())
    params = init_params(cfg, 0, mesh)
    opt_state = init_opt_state(optimizer, params, cfg, mesh)
    step = make_train_step(cfg, optimizer, mesh=mesh)
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, cfg.vocab_size, size=(args.batch, args.seq_len)).astype(np.int32)
               for _ in range(args.steps + 1)]
    params, opt_state, *_ = run_steps(step, params, opt_state, batches[:1])  # compile
    while time.time() < args.start_at:
        time.sleep(0.05)
    start = time.time()
    run_steps(step, params, opt_state, batches[1:])
    end = time.time()
    tokens = args.steps * args.batch * args.seq_len
    print(json.dumps({"tokens": tokens, "start": start, "end": end, "tokens_per_s": tokens / (end - start),
                      "device_kind": jax.devices()[0].device_kind}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
