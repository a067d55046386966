"""Benchmark one inner train step: tokens/s and MFU for a preset on whatever devices exist.

    python bench/train_step.py --model 1b --batch 16 --seq-len 2048 --remat full
    python bench/train_step.py --model tiny --steps 5            # CPU smoke run

Prints the device kind and count, a table, and one JSON line (prefix "JSON ") for scripts.
Random tokens (throughput does not depend on the data). The first step (compile) is excluded.
MFU uses the FLOP count in templar_jax/train/metrics.py and --peak-tflops (per device; a
default is looked up from the device kind for common accelerators, bf16 dense).
"""

from __future__ import annotations

import argparse
import json
import time

# bf16 dense peak TFLOP/s per device, from vendor spec sheets
PEAK_TFLOPS = {
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
    "TPU v4": 275.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v5p": 459.0,
    "TPU v6 lite": 918.0,
    "TPU v6e": 918.0,
}


def default_peak(device_kind: str) -> float:
    for key, value in PEAK_TFLOPS.items():
        if key.lower() in device_kind.lower():
            return value
    return 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--accum-steps", type=int, default=1)
    p.add_argument("--remat", default=None, help="none, full, dots_saveable, nothing_saveable, ...")
    p.add_argument("--attention", default=None, help="attention_impl: xla, cudnn or auto")
    p.add_argument("--dtype", default=None, help="compute dtype (default bfloat16)")
    p.add_argument("--n-layers", type=int, default=None, help="override layer count (fit a big preset)")
    p.add_argument("--no-scan", action="store_true")
    p.add_argument("--mesh", default=None, help='default: all devices on fsdp, e.g. "data=2,fsdp=4"')
    p.add_argument("--steps", type=int, default=10, help="timed steps after the compile step")
    p.add_argument("--peak-tflops", type=float, default=None, help="per device; default from device kind")
    args = p.parse_args(argv)

    import jax
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from templar_jax.model import init_params, load_model_config, param_count
    from templar_jax.model.layers import attention_backend
    from templar_jax.model.sharding import make_mesh
    from templar_jax.train import (
        TrainConfig, batch_sharding, init_opt_state, make_inner_optimizer, make_train_step, mfu,
        train_flops_per_token,
    )

    cfg = load_model_config(
        args.model, remat_policy=args.remat, attention_impl=args.attention, dtype=args.dtype, n_layers=args.n_layers,
        scan_layers=False if args.no_scan else None,
    )
    devices = jax.devices()
    kind = devices[0].device_kind
    peak = default_peak(kind) if args.peak_tflops is None else args.peak_tflops
    mesh = make_mesh(args.mesh)
    optimizer = make_inner_optimizer(TrainConfig())
    params = init_params(cfg, 0, mesh)
    opt_state = init_opt_state(optimizer, params, cfg, mesh)
    step = make_train_step(cfg, optimizer, mesh=mesh, accum_steps=args.accum_steps)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg.vocab_size, size=(args.batch, args.seq_len), dtype=np.int64).astype(np.uint32)
    batch = jax.device_put(tokens, batch_sharding(mesh))

    t0 = time.perf_counter()
    params, opt_state, metrics = step(params, opt_state, batch)
    float(metrics["loss"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        params, opt_state, metrics = step(params, opt_state, batch)
    float(metrics["loss"])
    step_s = (time.perf_counter() - t0) / max(args.steps, 1)
    tokens_per_step = args.batch * (args.seq_len - 1)
    tps = tokens_per_step / step_s
    result = {
        "model": args.model, "params": param_count(cfg), "n_layers": cfg.n_layers,
        "device_kind": kind, "devices": len(devices), "mesh": dict(mesh.shape),
        "batch": args.batch, "seq_len": args.seq_len, "accum_steps": args.accum_steps,
        "remat": cfg.remat_policy, "attention": attention_backend(cfg), "dtype": cfg.dtype, "scan": cfg.scan_layers,
        "step_s": step_s, "compile_s": compile_s, "tokens_per_s": tps,
        "tokens_per_s_per_device": tps / len(devices),
        "flops_per_token": train_flops_per_token(cfg, args.seq_len - 1),
        "peak_tflops": peak, "mfu": mfu(cfg, args.seq_len - 1, tps, peak, len(devices)),
        "loss": float(metrics["loss"]),
    }
    table = Table(title=f"train step: {args.model} on {len(devices)} x {kind}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in ("params", "batch", "seq_len", "remat", "attention", "dtype", "step_s", "compile_s",
                "tokens_per_s", "tokens_per_s_per_device", "peak_tflops", "mfu"):
        value = result[key]
        table.add_row(key, f"{value:,.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value))
    Console().print(table)
    print("JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
