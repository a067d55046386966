"""Registers, spills, shared memory and occupancy of the Pallas Triton kernels, without a GPU.

Each kernel variant is lowered for CUDA on this machine (as tests/test_kernels_lowering.py does),
its Triton IR is captured, and the `triton` package's own compiler (with the ptxas it ships)
builds it for sm_90a (H100/H200) in a separate process. ptxas reports registers per thread and
spill bytes; from those and the shared memory, the resident programs (CTAs) and warps per SM
follow from the sm_90 limits. These are compiler facts, not timings: a kernel whose programs
are serial chains of reductions (the radix select) runs about as fast as the warps resident per
SM let it hide their latency, which is what this prints.

    pip install triton==3.6.0   # the device image's version; not a project dependency
    python bench/kernel_resources.py                       # the default variant set
    python bench/kernel_resources.py --compress bf16:8:2:scatter --agg scatter:8:2
    python bench/kernel_resources.py --triton-python /path/to/venv/bin/python

`--triton-python` runs the compile step with another interpreter (one with `triton`), as the
two compilers are best kept out of one process. Prints one JSON line per variant and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

# sm_90 (H100/H200) per-SM limits: 64K 32-bit registers, 64 warps, 32 CTAs, 228 KB shared
# memory (1 KB of it reserved per CTA); registers go to warps in 256-register units.
SM90 = {"regs": 65536, "warps": 64, "ctas": 32, "smem": 228 * 1024, "smem_per_cta_reserved": 1024}

DEFAULT_COMPRESS = ["bf16:4", "bf16:8", "bf16:16", "f32:4", "f32:8", "bf16:4:2",
                    "bf16:4:1:onehot:early", "bf16:4:1:scatter", "bf16:8:1:scatter",
                    "bf16:16:1:scatter", "bf16:4:1:scatter:early", "bf16:8:1:scatter:early",
                    "bf16:8:2:scatter", "bf16:4:2:scatter:early", "bf16:8:2:scatter:early",
                    "bf16:16:2:scatter:early"]
DEFAULT_CUTS = ["ef:4", "select:4", "select:8"]
DEFAULT_AGG = ["onehot:4:1", "onehot:8:1", "onehot:4:1:f32", "scatter:4:1", "scatter:8:1",
               "scatter:4:2", "scatter:8:2", "scatter:8:4", "scatter:16:4"]


def occupancy(regs: int, smem: int, warps: int, sm=SM90) -> dict:
    """Resident CTAs and warps per SM for a kernel, and which limit binds."""
    regs_per_warp = -(-regs * 32 // 256) * 256
    limits = {"registers": sm["regs"] // (regs_per_warp * warps) if regs else sm["ctas"],
              "warps": sm["warps"] // warps, "ctas": sm["ctas"]}
    if smem:
        limits["shared"] = sm["smem"] // (smem + sm["smem_per_cta_reserved"])
    ctas = min(limits.values())
    return {"ctas_per_sm": ctas, "warps_per_sm": ctas * warps,
            "limiter": min(limits, key=limits.get)}


def _capture_ttir(fn, args) -> str:
    """Triton IR (text) of the last Pallas kernel that lowering `fn(*args)` for CUDA builds."""
    import jax
    from jax._src.pallas.triton import lowering, pallas_call_registration

    from templar_jax.sparseloco.kernels.aot import gpu_target

    captured = []
    original = lowering.lower_jaxpr_to_triton_module

    def capture(*a, **k):
        result = original(*a, **k)
        captured.append(result.module.operation.get_asm(enable_debug_info=False))
        return result

    pallas_call_registration.lowering.lower_jaxpr_to_triton_module = capture
    try:
        with gpu_target():  # jax 0.11 lowers for a GPU it is told of, not for none
            jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    finally:
        pallas_call_registration.lowering.lower_jaxpr_to_triton_module = original
    if not captured:
        raise RuntimeError("no Triton kernel was lowered")
    return captured[-1]


def lower_variants(args, out_dir: str) -> list[dict]:
    """Write one .ttir per variant into out_dir; returns the manifest."""
    import jax
    import jax.numpy as jnp

    from templar_jax.sparseloco.geometry import tensor_geometry
    from templar_jax.sparseloco.kernels.aggregate import scatter_mean_tiles
    from templar_jax.sparseloco.kernels.aggregate_scatter import Coded, scatter_sum_tiles
    from templar_jax.sparseloco.kernels.compress import ef_select
    from templar_jax.sparseloco.kernels.config import KernelConfig

    _, geom = tensor_geometry((8192, 8192), 0)  # a 70B-layer square weight: 64x64 tiles
    sds = jax.ShapeDtypeStruct
    e = sds((1, 8192, 8192), jnp.float32)
    peers = (32, 1, geom.num_chunks, geom.k)  # 20 peers pad to 32
    manifest = []

    def add(kind, variant, warps, fn, fn_args):
        name = f"{kind}_{len(manifest)}"
        try:
            text = _capture_ttir(fn, fn_args)
        except Exception as exc:  # report it; other variants still run
            manifest.append({"kind": kind, "variant": variant, "num_warps": warps,
                             "error": f"lowering: {type(exc).__name__}: {str(exc)[:300]}"})
            return
        path = os.path.join(out_dir, name + ".ttir")
        with open(path, "w") as f:
            f.write(text)
        manifest.append({"kind": kind, "variant": variant, "num_warps": warps, "ttir": path})

    def select(config, cut=None):
        return lambda e, d: ef_select(e, d, beta=0.95, geom=geom, config=config,
                                      tiles_per_block=1, cut=cut)

    for spec in args.compress:
        config = KernelConfig.parse(spec, "compress", backend="triton")
        add("compress", spec, config.num_warps, select(config), (e, e))
    for spec in args.cuts:
        cut, warps = spec.split(":")
        config = KernelConfig.parse(f"auto:{warps}", "compress", backend="triton")
        add("compress_cut", spec, config.num_warps, select(config, cut), (e, e))
    for spec in args.agg:
        config = KernelConfig.parse(spec, "aggregate", backend="triton")
        if config.aggregate == "scatter":
            def fn(i, c, t, n, config=config):
                return scatter_sum_tiles(i, Coded(c, t), n, geom, rule="median_clip",
                                         config=config)
            fn_args = (sds(peers, jnp.int32), sds(peers, jnp.uint8),
                       sds(peers[:2] + (4,), jnp.float32), sds((), jnp.float32))
        else:
            def fn(i, v, n, config=config):
                return scatter_mean_tiles(i, v, n, geom, rule="median_clip", config=config)
            fn_args = (sds(peers, jnp.int32), sds(peers, jnp.float32), sds((), jnp.float32))
        add("aggregate", spec, config.num_warps, fn, fn_args)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return manifest


def compile_manifest(out_dir: str, arch: str) -> None:
    """(Run in its own process.) Compile each captured kernel with `triton` for sm_90a and
    print its ptxas resource report as JSON lines."""
    import re

    import triton
    from triton.backends.compiler import GPUTarget

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with open(os.path.join(out_dir, "manifest.json")) as f:
        manifest = json.load(f)
    for entry in manifest:
        row = {k: entry[k] for k in ("kind", "variant", "num_warps")}
        if "error" in entry:
            print(json.dumps(dict(row, error=entry["error"])), flush=True)
            continue
        try:
            kernel = triton.compile(entry["ttir"], target=GPUTarget("cuda", 90, 32),
                                    options={"num_warps": entry["num_warps"], "num_stages": 1})
            ptx = entry["ttir"][:-5] + ".ptx"
            with open(ptx, "w") as f:
                f.write(kernel.asm["ptx"])
            report = subprocess.run([ptxas, f"-arch={arch}", "-v", ptx, "-o", ptx + ".cubin"],
                                    capture_output=True, text=True, check=True).stderr
            regs = int(re.search(r"Used (\d+) registers", report).group(1))
            spill_st, spill_ld = (int(x) for x in re.search(
                r"(\d+) bytes spill stores, (\d+) bytes spill loads", report).groups())
            row.update(registers=regs, spill_stores=spill_st, spill_loads=spill_ld,
                       shared_bytes=int(kernel.metadata.shared))
        except Exception as exc:
            row["error"] = f"compile: {type(exc).__name__}: {str(exc)[:300]}"
        print(json.dumps(row), flush=True)


def print_table(rows):
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        return
    table = Table(title="Pallas Triton kernels on sm_90a (ptxas; occupancy from H100/H200 limits)")
    for col in ("kernel", "variant", "warps", "regs/thread", "spill st/ld B", "shared KB",
                "CTAs/SM", "warps/SM", "limit", "note"):
        table.add_column(col)
    for r in rows:
        ok = "registers" in r
        table.add_row(r["kind"], r["variant"], str(r["num_warps"]),
                      str(r.get("registers", "")),
                      f"{r['spill_stores']}/{r['spill_loads']}" if ok else "",
                      f"{r['shared_bytes'] / 1024:.1f}" if ok else "",
                      str(r.get("ctas_per_sm", "")), str(r.get("warps_per_sm", "")),
                      r.get("limiter", ""), r.get("error", "")[:60])
    Console(stderr=True, width=200).print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compress", type=lambda s: s.split(","), default=DEFAULT_COMPRESS,
                    help="compression variants DOTS:WARPS[:RADIX[:COMPACT[:SELECT]]]")
    ap.add_argument("--cuts", type=lambda s: s.split(","), default=DEFAULT_CUTS,
                    help="compression kernel stage cuts CUT:WARPS (CUT ef|select)")
    ap.add_argument("--agg", type=lambda s: s.split(","), default=DEFAULT_AGG,
                    help="aggregation variants KERNEL:WARPS:TILES[:DOTS]")
    ap.add_argument("--arch", default="sm_90a", help="ptxas target (sm_90a: H100/H200)")
    ap.add_argument("--triton-python", default=sys.executable,
                    help="interpreter with the `triton` package for the compile step")
    ap.add_argument("--compile-only", metavar="DIR", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.compile_only:
        compile_manifest(args.compile_only, args.arch)
        return
    with tempfile.TemporaryDirectory(prefix="kernel_resources_") as out_dir:
        lower_variants(args, out_dir)
        proc = subprocess.run([args.triton_python, os.path.abspath(__file__), "--compile-only",
                               out_dir, "--arch", args.arch], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"the compile step failed (is `triton` installed for {args.triton_python}? "
                 f"pip install triton==3.6.0):\n{proc.stderr[-2000:]}")
    rows = []
    for line in proc.stdout.splitlines():
        row = json.loads(line)
        if "registers" in row:
            row.update(occupancy(row["registers"], row["shared_bytes"], row["num_warps"]))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows)


if __name__ == "__main__":
    main()
