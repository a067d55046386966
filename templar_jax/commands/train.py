"""`templar-jax train`: plain inner training (no SparseLoCo) of a preset, with progress lines."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a preset with AdamW on synthetic, bundled or shard data (prints loss, tokens/s, MFU)",
        description=(
            "Plain data-parallel/FSDP training of one model (the inner loop of a miner, without "
            "SparseLoCo). --data synthetic is a fixed random Markov chain (learnable, offline); "
            "--data bundled is the stdlib-docs corpus (built and cached on first use); any other "
            "value is a folder of train_XXXXXX.npy shards. Multi-host: pass --coordinator, "
            "--num-processes, --process-id (or the JAX_* env vars; SLURM/TPU are auto-detected) "
            "and run the same command on every host."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="tiny", help="preset name or YAML path")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=8, help="global batch (sequences per step)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (targets = shifted inputs)")
    p.add_argument("--accum-steps", type=int, default=1, help="micro-batches per step (gradient accumulation)")
    p.add_argument("--data", default="synthetic", help="synthetic | bundled | DIR of shards")
    p.add_argument("--pad-id", type=int, default=None,
                   help="pad/EOS id whose targets are masked (default: the shard manifest's eos_id; none for synthetic)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (SPEC production: 1.2e-4)")
    p.add_argument("--warmup", type=int, default=20, help="warmup steps (SPEC production: 1500)")
    p.add_argument("--cosine-steps", type=int, default=None, help="cosine length after warmup (default: --steps)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--mesh", default=None, help='e.g. "fsdp=8" or "data=2,fsdp=2,tensor=2" (default: all devices on fsdp)')
    p.add_argument("--remat", default=None, help="remat policy (none, full, dots_saveable, ...)")
    p.add_argument("--dtype", default=None, help="compute dtype (bfloat16 default, float32)")
    p.add_argument("--no-scan", action="store_true", help="loop over layers in Python instead of lax.scan")
    p.add_argument("--peak-tflops", type=float, default=0.0, help="peak TFLOP/s per device, for MFU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--json", action="store_true", help="one JSON line per logged step")
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-host)")
    p.add_argument("--num-processes", type=int, default=None)
    p.add_argument("--process-id", type=int, default=None)
    p.set_defaults(func=run)


def _data_source(args, vocab_size: int, rows: slice):
    """(iterator of local [B_local, L] batches, pad/EOS id or None)."""
    from templar_jax.train import markov_batches
    from templar_jax.train.data_hook import shard_batches

    if args.data == "synthetic":
        local_b = rows.stop - rows.start
        # every process draws its own rows from a differently seeded stream
        return markov_batches(vocab_size, local_b, args.seq_len, seed=args.seed * 7919 + rows.start), None
    from templar_jax.data import ShardDataset, ensure_bundled_dataset, read_manifest

    folder = ensure_bundled_dataset(seq_len=args.seq_len) / "train" if args.data == "bundled" else args.data
    dataset = ShardDataset(folder, args.seq_len)
    manifest = read_manifest(folder)
    eos = manifest.eos_id if manifest is not None else None
    if manifest is not None and manifest.vocab_size and manifest.vocab_size > vocab_size:
        raise ValueError(f"data vocab {manifest.vocab_size} > model vocab {vocab_size}")
    return shard_batches(dataset, args.batch, seed=args.seed, rows=rows), eos


def run(args) -> int:
    from templar_jax.distributed import initialize

    info = initialize(args.coordinator, args.num_processes, args.process_id)  # before any device use

    import jax
    from rich.console import Console

    from templar_jax.distributed import process_slice
    from templar_jax.model import load_model_config
    from templar_jax.model.sharding import make_mesh
    from templar_jax.train import TrainConfig, mfu, run_training, steady_tokens_per_s

    console = Console(soft_wrap=True)  # progress lines stay one line each (greppable)
    cfg = load_model_config(
        args.model, remat_policy=args.remat, dtype=args.dtype, scan_layers=False if args.no_scan else None
    )
    if args.seq_len - 1 > cfg.max_seq_len:
        log.warning("seq_len %d exceeds the preset's max_seq_len %d", args.seq_len, cfg.max_seq_len)
    mesh = make_mesh(args.mesh)
    rows = process_slice(mesh, args.batch)
    batches, pad_id = _data_source(args, cfg.vocab_size, rows)
    pad_id = args.pad_id if args.pad_id is not None else pad_id
    train_cfg = TrainConfig(
        lr=args.lr, warmup_steps=args.warmup, cosine_steps=args.cosine_steps or args.steps,
        weight_decay=args.weight_decay,
    )
    if info.process_id == 0:
        console.print(
            f"train {args.model}: {jax.device_count()} x {jax.devices()[0].device_kind}, "
            f"mesh {dict(mesh.shape)}, batch {args.batch} x {args.seq_len}, data {args.data}, "
            f"pad/EOS target id {pad_id}"
        )

    def on_step(r):
        if info.process_id or (r.step % args.log_every and r.step != args.steps - 1):
            return
        r_mfu = mfu(cfg, args.seq_len - 1, r.tokens_per_s, args.peak_tflops, mesh.size)
        if args.json:
            print(json.dumps({"step": r.step, "loss": r.loss, "grad_norm": r.grad_norm,
                              "tokens_per_s": r.tokens_per_s, "mfu": r_mfu}), flush=True)
        else:
            console.print(
                f"step {r.step:5d}  loss {r.loss:7.4f}  grad_norm {r.grad_norm:6.3f}  "
                f"tokens/s {r.tokens_per_s:10,.0f}  MFU {100 * r_mfu:5.2f}%"
            )

    history = run_training(
        cfg, train_cfg, batches, args.steps, mesh=mesh, accum_steps=args.accum_steps,
        pad_id=pad_id, seed=args.seed, on_step=on_step,
    ).records
    if info.process_id == 0 and history:
        console.print(
            f"done: loss {history[0].loss:.4f} -> {history[-1].loss:.4f}, "
            f"steady {steady_tokens_per_s(history):,.0f} tokens/s (excluding step 0 with compile)"
        )
    return 0
