"""SparseLoCo compression/aggregation benchmark: pure JAX vs Pallas kernel vs the HBM floor.

One 70B decoder layer (wq, wk, wv, wo, w_gate, w_up, w_down, 2 norms: 855.7M params; `--scale s`
divides every dim by s, so params shrink by s^2). Per step it times, in the same process:
  floor      beta*e + delta over all tensors (reads 8, writes 4 bytes/param: the least any
             error-feedback compression step must move), with its bandwidth
  pure       sparseloco.compress.ef_compress_tensor (EF + top-64/4096 + 2-bit quantize + residual)
  kernel     kernels.ef_compress_tensor_pallas (same results; `match` checks it bitwise)
  agg_floor  read every peer's indices and codes once, write the dense result (the least any
             aggregation moves), with its bandwidth
  agg_pure / agg_ordered / agg_kernel   aggregate R peers (dequantize, median-norm clip,
             scatter-mean): one scatter for all peers / one per peer in order / a Pallas
             kernel, with `deterministic` (a second run gives the same bits)
Compression kernel rows repeat for each --variants entry (dot mode, Triton warps, radix-select
bits, compaction, select mode; grammar in templar_jax/sparseloco/kernels/config.py);
`stage_*` rows profile the --stage-variants entries (kernel pass 1 alone, and cut after the EF
update / after the top-k mask); aggregation kernel rows repeat for each --agg-variants entry
(one-hot or scatter kernel, warps, chunks per program, dot mode). A `best` line per step
names the fastest variant with right results and whether issue #9's target is met. Each variant
is a `KernelConfig`, a static argument of the jitted step, so it compiles its own kernel. Prints
one JSON line per measurement and a table. On CPU the kernels run in Pallas interpret mode: their times
there say nothing about GPU speed.

    python bench/compress.py --scale 16            # CPU smoke run
    python bench/compress.py --scale 1 --iters 10  # one H100/H200
    python bench/compress.py --scale 1 --variants bf16:4,bf16:8,bf16:4:2   # sweep kernel variants
    python bench/compress.py --scale 1 --only aggregate --agg-variants onehot:4:1,scatter:8:4
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco.aggregate import aggregate_stacked
from templar_jax.sparseloco.compress import ef_compress_tensor
from templar_jax.sparseloco.geometry import tensor_geometry
from templar_jax.sparseloco.kernels.compress import ef_compress_tensor_pallas, ef_select
from templar_jax.sparseloco.kernels.config import KernelConfig, KernelConfigError, resolve_backend
from templar_jax.sparseloco.payload import TensorPayload, peer_bucket

BETA = 0.95


def layer_shapes(scale: int) -> dict[str, tuple[int, ...]]:
    """One Covenant-70B decoder layer (d 8192, kv 1024, ffn 28672) with dims divided by scale."""
    d, kv, f = 8192 // scale, 1024 // scale, 28672 // scale
    return {"attn/wq": (d, d), "attn/wk": (d, kv), "attn/wv": (d, kv), "attn/wo": (d, d),
            "mlp/w_gate": (d, f), "mlp/w_up": (d, f), "mlp/w_down": (f, d),
            "attn_norm/scale": (d,), "mlp_norm/scale": (d,)}


def timed(fn, *args, iters: int, carry: bool = False):
    """Median milliseconds of fn(*args) after one compile+warm-up call. With carry, the first
    output feeds the first argument back (an error-feedback loop with donated buffers)."""
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(iters):
        if carry:
            args = (out[1],) + args[1:]
        t = time.perf_counter()
        out = fn(*args)
        jax.block_until_ready(out)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times)), out


def compress_fn(shapes, config: KernelConfig | None, tiles: int | None, donate: bool):
    """The layer's EF + compression step: pure JAX (config None) or the kernel variant."""
    geoms = {n: tensor_geometry(s, 0)[1] for n, s in shapes.items()}

    def run(e, d):
        payload, new_e = {}, {}
        for n in shapes:
            if config is None:
                payload[n], new_e[n] = ef_compress_tensor(e[n], d[n], beta=BETA, geom=geoms[n])
            else:
                payload[n], new_e[n] = ef_compress_tensor_pallas(
                    e[n], d[n], beta=BETA, geom=geoms[n], config=config, tiles_per_block=tiles)
        return payload, new_e

    return jax.jit(run, donate_argnums=(0,) if donate else ())


def stage_fn(shapes, config: KernelConfig, tiles: int | None, cut: str | None):
    """The compression kernel's pass 1 alone over the layer's 2-D tensors (cut=None: EF + top-k
    + compaction, no XLA quantize/residual), or cut short (kernels.compress.STAGE_CUTS)."""
    two_d = {n: s for n, s in shapes.items() if len(s) == 2}
    geoms = {n: tensor_geometry(s, 0)[1] for n, s in two_d.items()}

    def run(e, d):
        return {n: ef_select(e[n].reshape((1,) + s), d[n].reshape((1,) + s), beta=BETA,
                             geom=geoms[n], config=config, tiles_per_block=tiles, cut=cut)
                for n, s in two_d.items()}

    return jax.jit(run)


def floor_fn(e, d):
    return {n: BETA * e[n] + d[n] for n in e}


def agg_floor_fn(shapes, peers: int, stacked):
    """The least an aggregation moves: read every real peer's indices and codes once, write
    the dense float32 result (here a fill with a value that depends on all of them)."""
    out = {}
    for n, s in shapes.items():
        idx, codes = stacked[n].idx[:peers], stacked[n].codes[:peers]
        out[n] = jnp.full(s, jnp.sum(idx) + jnp.sum(codes.astype(jnp.int32)), jnp.float32)
    return out


def agg_floor_bytes(shapes, stacked, peers: int) -> int:
    """Bytes `agg_floor_fn` moves."""
    total = 0
    for n, s in shapes.items():
        p = stacked[n]
        per_peer = p.idx[0].size * p.idx.dtype.itemsize + p.codes[0].size * p.codes.dtype.itemsize
        total += 4 * int(np.prod(s)) + peers * per_peer
    return total


def bitwise_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        x.shape == y.shape and np.array_equal(np.asarray(x).reshape(-1).view(np.uint8),
                                              np.asarray(y).reshape(-1).view(np.uint8))
        for x, y in zip(la, lb))


def synthetic_peers(shape, peers: int, key):
    """R random payloads (distinct sorted indices per chunk, random codes/side data), stacked and
    zero-padded to the power-of-two peer bucket, as `aggregate_tensor` does."""
    _, geom = tensor_geometry(shape, 0)
    out = []
    for r in range(peers):
        k1, k2, k3, key = jax.random.split(jax.random.fold_in(key, r), 4)
        u = jax.random.uniform(k1, (geom.num_chunks, geom.chunk_size))
        idx = jnp.sort(jax.lax.top_k(u, geom.k)[1].astype(jnp.int32), axis=-1)
        codes = jax.random.randint(k2, idx.shape, 0, 4).astype(jnp.uint8)
        lut = jnp.sort(jax.random.normal(k3, (4,))) * (r + 1) * 1e-3
        out.append(TensorPayload(idx, codes, jnp.float32(1e-5 * r), jnp.float32(1.0), lut))
    out += [jax.tree.map(jnp.zeros_like, out[0])] * (peer_bucket(peers) - peers)
    return TensorPayload(*(jnp.stack([getattr(p, f) for p in out]) for f in TensorPayload._fields))


def variant_sweep(variants: list[str], backend: str):
    """Yield (KernelConfig, row fields) per compression spec (kernels/config.py): the fields
    resolved on `backend`, with `spec` the form tuned.py takes."""
    for text in variants:
        config = KernelConfig.parse(text, "compress", backend=backend)
        r = config.resolve("compress")
        yield config, {"dots": r.dots, "num_warps": r.num_warps, "radix_bits": r.radix_bits,
                       "compact": r.compact, "select": r.select, "spec": r.spec("compress")}


def agg_variant_sweep(variants: list[str], backend: str):
    """Yield (KernelConfig, {"kernel", "num_warps", "tiles", "dots", "spec"}) per aggregation
    spec, resolved on `backend`."""
    for text in variants:
        config = KernelConfig.parse(text, "aggregate", backend=backend)
        r = config.resolve("aggregate")
        yield config, {"kernel": r.aggregate, "num_warps": r.num_warps,
                       "tiles": r.aggregate_tiles, "dots": r.dots, "spec": r.spec("aggregate")}


_last_emit = [time.perf_counter()]


def emit(rows, **row):
    """Record a row; `seconds` is the wall time since the previous row (compiles included), so
    a run's rows say what each measurement costs on that device."""
    now = time.perf_counter()
    row["seconds"] = round(now - _last_emit[0], 1)
    _last_emit[0] = now
    rows.append(row)
    print(json.dumps(row), flush=True)


def bench_compress(args, shapes, rows, backend):
    n_params = sum(int(np.prod(s)) for s in shapes.values())
    key = jax.random.key(0)  # drawn on the device: host RNG for 2 x 856M floats takes ~20 s
    e0 = {n: jax.random.normal(jax.random.fold_in(key, 2 * i), s) * 1e-3
          for i, (n, s) in enumerate(shapes.items())}
    d = {n: jax.random.normal(jax.random.fold_in(key, 2 * i + 1), s) * 1e-3
         for i, (n, s) in enumerate(shapes.items())}
    common = dict(step="compress", params=n_params, backend=backend,
                  device=jax.devices()[0].device_kind)

    ms, _ = timed(jax.jit(floor_fn), e0, d, iters=args.iters)
    emit(rows, impl="floor", ms=ms, ns_per_param=ms * 1e6 / n_params,
         gb_per_s=12 * n_params / ms / 1e6, **common)
    pure = compress_fn(shapes, None, None, donate=False)
    want = pure(e0, d)
    jax.block_until_ready(want)
    pure_ms, _ = timed(compress_fn(shapes, None, None, donate=True),
                       jax.tree.map(jnp.copy, e0), d, iters=args.iters, carry=True)
    emit(rows, impl="pure", ms=pure_ms, ns_per_param=pure_ms * 1e6 / n_params, **common)
    for config, variant in variant_sweep(args.variants, backend):
        try:  # one compile per variant: the donating function checks `match`, then is timed
            kernel_fn = compress_fn(shapes, config, args.tiles_per_block, donate=True)
            got = kernel_fn(jax.tree.map(jnp.copy, e0), d)
            match = bitwise_equal(got, want)
            del got
            kern_ms, _ = timed(kernel_fn, jax.tree.map(jnp.copy, e0), d, iters=args.iters,
                               carry=True)
            emit(rows, impl="kernel", ms=kern_ms, ns_per_param=kern_ms * 1e6 / n_params,
                 match=match, faster_than_pure=kern_ms < pure_ms, **variant, **common)
        except Exception as exc:  # a lowering failure on a new device must not hide other rows
            traceback.print_exc(file=sys.stderr)
            emit(rows, impl="kernel", error=f"{type(exc).__name__}: {str(exc)[:300]}",
                 **variant, **common)
    bench_stages(args, shapes, rows, backend, e0, d, common)


def bench_stages(args, shapes, rows, backend, e0, d, common):
    """Where a kernel variant's time goes: pass 1 alone and cut after the EF update / after the
    top-k mask (the EF-only cut once: it does not depend on the variant)."""
    two_d_params = sum(int(np.prod(s)) for s in shapes.values() if len(s) == 2)
    cuts = ["ef"]
    for config, variant in variant_sweep(args.stage_variants, backend):
        for cut in cuts + ["select", None]:
            try:
                ms, _ = timed(stage_fn(shapes, config, args.tiles_per_block, cut), e0, d,
                              iters=args.iters)
                emit(rows, impl=f"stage_{cut or 'pass1'}", ms=ms,
                     ns_per_param=ms * 1e6 / two_d_params, **variant,
                     **dict(common, params=two_d_params))
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                emit(rows, impl=f"stage_{cut or 'pass1'}", error=f"{type(exc).__name__}: "
                     f"{str(exc)[:300]}", **variant, **common)
        cuts = []


def bench_aggregate(args, shapes, rows, backend):
    two_d = {n: s for n, s in shapes.items() if len(s) == 2}  # norms are ~0.002% of the layer
    n_params = sum(int(np.prod(s)) for s in two_d.values())
    key = jax.random.key(1)
    stacked = {n: synthetic_peers(s, args.peers, jax.random.fold_in(key, i))
               for i, (n, s) in enumerate(two_d.items())}
    jax.block_until_ready(stacked)
    valid = jnp.arange(peer_bucket(args.peers)) < args.peers

    def run(impl, config=KernelConfig()):
        """impl "pure" | "ordered" (pure JAX, one scatter per peer) | "pallas" (`config`)."""
        def f(st, valid):
            return {n: aggregate_stacked(st[n], valid, shape=s, batch_ndim=0, chunk=64,
                                         rule="median_clip", ordered=impl == "ordered",
                                         impl="pallas" if impl == "pallas" else "jax",
                                         kernel=config)
                    for n, s in two_d.items()}
        return jax.jit(f)

    common = dict(step="aggregate", peers=args.peers, params=n_params, backend=backend,
                  device=jax.devices()[0].device_kind)
    floor_ms, _ = timed(jax.jit(partial(agg_floor_fn, two_d, args.peers)), stacked,
                        iters=args.iters)
    moved = agg_floor_bytes(two_d, stacked, args.peers)
    emit(rows, impl="agg_floor", ms=floor_ms, ns_per_param=floor_ms * 1e6 / n_params,
         gb_per_s=moved / floor_ms / 1e6, **common)
    pure = run("pure")
    pure_ms, want = timed(pure, stacked, valid, iters=args.iters)
    # a GPU's scatter-add uses atomics: its sums can differ in the last bits from run to run
    emit(rows, impl="agg_pure", ms=pure_ms, ns_per_param=pure_ms * 1e6 / n_params,
         deterministic=bitwise_equal(pure(stacked, valid), want), **common)
    # one unique-index scatter per peer, in peer order: deterministic wherever it runs
    ordered = run("ordered")
    ord_ms, ord_out = timed(ordered, stacked, valid, iters=args.iters)
    emit(rows, impl="agg_ordered", ms=ord_ms, ns_per_param=ord_ms * 1e6 / n_params,
         match=bitwise_equal(ord_out, want),
         deterministic=bitwise_equal(ordered(stacked, valid), ord_out),
         faster_than_pure=ord_ms < pure_ms, **common)
    for config, variant in agg_variant_sweep(args.agg_variants, backend):
        try:
            kernel = run("pallas", config)
            kern_ms, got = timed(kernel, stacked, valid, iters=args.iters)
            emit(rows, impl="agg_kernel", ms=kern_ms, ns_per_param=kern_ms * 1e6 / n_params,
                 match=bitwise_equal(got, want),
                 deterministic=bitwise_equal(kernel(stacked, valid), got),
                 max_abs_diff=float(max(jnp.max(jnp.abs(got[n] - want[n])) for n in got)),
                 match_ordered=bitwise_equal(got, ord_out),
                 faster_than_pure=kern_ms < pure_ms, **variant, **common)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            emit(rows, impl="agg_kernel", error=f"{type(exc).__name__}: {str(exc)[:300]}",
                 **variant, **common)


def print_table(rows):
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # rich is a dependency, but the JSON lines above are the record
        return
    table = Table(title="SparseLoCo step per 70B decoder layer")
    for col in ("step", "impl", "kernel", "dots", "warps", "radix", "select", "tiles", "params",
                "ms", "ns/param", "GB/s", "match", "note"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["step"], r["impl"], r.get("kernel", r.get("compact", "")),
                      r.get("dots", ""), str(r.get("num_warps", "")),
                      str(r.get("radix_bits", "")), r.get("select", ""),
                      str(r.get("tiles", "")),
                      f"{r['params'] / 1e6:.1f}M",
                      f"{r['ms']:.2f}" if "ms" in r else "-",
                      f"{r['ns_per_param']:.3f}" if "ns_per_param" in r else "-",
                      f"{r['gb_per_s']:.0f}" if "gb_per_s" in r else "",
                      str(r.get("match", "")), r.get("error", "")[:60])
    Console(stderr=True, width=200).print(table)  # wide even when not a terminal


# Issue #9's targets per 70B decoder layer on an H200 (ms); only meaningful at --scale 1. They
# are checked on whatever device ran; an H100 has the same compute and less HBM bandwidth (3.35 vs
# 4.8 TB/s), so there they are at least as strict.
TARGET_MS = {"compress": 8.0, "aggregate": 10.0}
TARGET_DEVICE = "NVIDIA H200"
_VARIANT_KEYS = ("dots", "num_warps", "radix_bits", "compact", "select", "kernel", "tiles")


def best_rows(rows, full_layer: bool) -> list[dict]:
    """Per step, the fastest kernel variant whose results are right (compress: `match` with
    the pure path; aggregate: `match_ordered` with the in-order path and `deterministic`),
    against the pure path and the floor, and (for a full 70B layer) whether the target is met."""
    out = []
    for step, impl, ok in (("compress", "kernel", lambda r: r.get("match")),
                           ("aggregate", "agg_kernel",
                            lambda r: r.get("match_ordered") and r.get("deterministic"))):
        by_impl = {r["impl"]: r for r in rows if r["step"] == step and "ms" in r}
        good = [r for r in rows if r["step"] == step and r["impl"] == impl and "ms" in r
                and ok(r)]
        if not good:
            continue
        best = min(good, key=lambda r: r["ms"])
        pure = by_impl.get("pure" if step == "compress" else "agg_pure")
        floor = by_impl.get("floor" if step == "compress" else "agg_floor")
        out.append({"best": step, "ms": best["ms"],
                    # the spec to copy into sparseloco/kernels/tuned.py if it should be adopted
                    "spec": best.get("spec"),
                    "variant": {k: best[k] for k in _VARIANT_KEYS if k in best},
                    "x_faster_than_pure": pure["ms"] / best["ms"] if pure else None,
                    "x_floor": best["ms"] / floor["ms"] if floor else None,
                    "target_ms": TARGET_MS[step], "target_device": TARGET_DEVICE,
                    "target_met": best["ms"] <= TARGET_MS[step] if full_layer else None,
                    "device": best["device"], "params": best["params"]})
    return out


def _variant_list(op: str):
    """argparse type: comma-separated `op` specs, each checked by KernelConfig.parse."""
    def check(text: str) -> list[str]:
        specs = text.split(",")
        try:
            for spec in specs:
                KernelConfig.parse(spec, op)
        except KernelConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return specs
    return check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=int, default=1,
                    help="divide the 70B layer dims by this (16 or 32 for a CPU smoke run)")
    ap.add_argument("--iters", type=int, default=5, help="timed iterations (median reported)")
    ap.add_argument("--peers", type=int, default=20, help="peers in the aggregation benchmark")
    ap.add_argument("--backend", default="auto",
                    help="Pallas backend: auto|interpret|triton|mosaic_tpu (auto: from the device)")
    ap.add_argument("--tiles-per-block", type=int, default=None,
                    help="64x64 chunks per compression kernel program (default: the "
                         "backend's choice)")
    ap.add_argument("--variants", type=_variant_list("compress"),
                    default=["auto:4"],
                    help="kernel variants as DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]], "
                         "comma-separated (DOTS auto|f32|bf16: how the exact one-hot matmuls "
                         "run, auto = bf16 on Triton; WARPS: Triton warps per program; RADIX: "
                         "bits per radix-select step, default 1; COMPACT onehot|scatter, default "
                         "onehot; SELECT full|early, default full)")
    ap.add_argument("--stage-variants", type=_variant_list("compress"),
                    default=["auto:4"],
                    help="compression variants (as --variants) to profile by stage: the "
                         "kernel's pass 1 alone, and cut after EF / after the top-k mask")
    ap.add_argument("--agg-variants", type=_variant_list("aggregate"),
                    default=["onehot:4:1", "scatter:4:1"],
                    help="aggregation kernel variants as KERNEL:WARPS:TILES[:DOTS] (KERNEL "
                         "onehot|scatter; TILES: 64x64 chunks per program; DOTS auto|f32|bf16 "
                         "for onehot, default bf16)")
    ap.add_argument("--only", choices=("compress", "aggregate"), default=None)
    args = ap.parse_args()
    if 8192 % args.scale or 1024 % args.scale or (1024 // args.scale) < 1:
        ap.error("--scale must divide 1024")
    backend = resolve_backend(args.backend)
    shapes = layer_shapes(args.scale)
    rows: list[dict] = []
    if args.only in (None, "compress"):
        bench_compress(args, shapes, rows, backend)
    if args.only in (None, "aggregate"):
        bench_aggregate(args, shapes, rows, backend)
    for best in best_rows(rows, full_layer=args.scale == 1):  # what to adopt as the `auto` default, if it beats the rest
        print(json.dumps(best), flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
