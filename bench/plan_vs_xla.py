"""The memory planner (templar_jax/model/plan.py) against XLA's own accounting, per device.

For each preset and mesh, lowers and compiles the miner's three device programs from abstract
shapes (jax.ShapeDtypeStruct with NamedShardings: nothing is allocated) on fake CPU devices:
  train     one inner step: grads of one micro-batch + AdamW update, params/opt_state donated
            (train/step.py's make_train_step, remat policy --remat)
  compress  error feedback + top-k + 2-bit quantize of the pseudo-gradient, per shard
            (sparseloco.sparseloco's jitted update): delta and EF in, payload and new EF out
  outer     theta0 - alpha * aggregate (sparseloco.outer_step)
and prints XLA's `compiled.memory_analysis()` (arguments + outputs - aliased + temporaries) next
to the plan's bytes for the same buffers: the plan's phase with every offload on, where each
phase counts only what that program holds (train: params, grads, AdamW, gathered weights,
activations, attention scores; compress: delta, EF in + out, temporaries; outer: theta0,
aggregate, new params). The plan is asked for platform "cpu" (unfused attention keeps scores).

    XLA_FLAGS=--xla_force_host_platform_device_count=64 \\
        python bench/plan_vs_xla.py --preset covenant-72b --mesh fsdp=8 --mesh fsdp=64
    python bench/plan_vs_xla.py --preset tiny --preset 150m --mesh fsdp=8   # seconds

(The script sets the flag itself when XLA_FLAGS does not carry it.) Prints one JSON line per
program and a table at the end; a CPU compile says nothing about GPU/TPU fusion choices, so
read the ratios as a check of the planner's arithmetic, not of a real device's peak. Two XLA:CPU
habits a GPU/TPU compile does not share: its default scheduler runs independent work early and
holds it (the programs are compiled with its memory-aware scheduler; --cpu-scheduler default
shows the other), and it has no bf16 collectives (bf16 all-gathers run in fp32: the plan's
platform "cpu" counts gathered weights at 4 bytes).
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=64").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from templar_jax.model import load_model_config, param_batch_dims  # noqa: E402
from templar_jax.model.api import abstract_params  # noqa: E402
from templar_jax.model.plan import GIB, OFFLOADABLE, plan_memory  # noqa: E402
from templar_jax.model.sharding import make_mesh, param_shardings, parse_mesh_spec  # noqa: E402
from templar_jax.sparseloco import SparseLoCoState, outer_step, sparseloco  # noqa: E402
from templar_jax.train.optimizer import make_inner_optimizer  # noqa: E402
from templar_jax.train.step import batch_sharding, make_train_step, opt_state_shardings  # noqa: E402
from templar_jax.tree import flatten_params  # noqa: E402

TOLERANCE = 0.15


def abstract_tree(shapes, shardings, dtype=None):
    return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, dtype or s.dtype, sharding=sh),
                        shapes, shardings)


def xla_bytes(compiled) -> dict:
    m = compiled.memory_analysis()
    out = {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes,
           "alias": m.alias_size_in_bytes, "temp": m.temp_size_in_bytes}
    out["peak"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


# XLA:CPU's default scheduler favours concurrency: it starts independent work (a table's
# all-gather, zeroed gradient buffers) early and holds it, which GPU/TPU schedulers, which watch
# memory, do not. The comparison uses the memory-aware one (--cpu-scheduler to change).
CPU_SCHEDULERS = {"memory": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED", "default": "CPU_SCHEDULER_TYPE_DEFAULT"}


def compile_timed(fn, *args, scheduler: str = "memory"):
    t0 = time.time()
    lowered = fn.lower(*args)
    t1 = time.time()
    compiled = lowered.compile(compiler_options={"xla_cpu_scheduler_type": CPU_SCHEDULERS[scheduler]})
    return compiled, t1 - t0, time.time() - t1


def programs(cfg, mesh, micro_batch: int, seq_len: int):
    """{name: (jitted fn, abstract args)} of the miner's three device programs."""
    shardings = param_shardings(cfg, mesh)
    params = abstract_tree(abstract_params(cfg), shardings)
    optimizer = make_inner_optimizer()
    opt_state = abstract_tree(jax.eval_shape(optimizer.init, abstract_params(cfg)),
                              opt_state_shardings(optimizer, cfg, mesh))
    rows = micro_batch * mesh.shape["data"] * mesh.shape["fsdp"]
    batch = jax.ShapeDtypeStruct((rows, seq_len), jnp.int32, sharding=batch_sharding(mesh))
    train = make_train_step(cfg, optimizer, mesh=mesh, accum_steps=1, pad_id=None)

    specs = {n: s.spec for n, s in flatten_params(shardings).items()}
    tx = sparseloco(topk=64, chunk=64, batch_dims=param_batch_dims(cfg), mesh=mesh, param_specs=specs)
    compress = jax.jit(lambda delta, ef: tx.update(delta, SparseLoCoState(ef)))
    outer = jax.jit(lambda theta0, agg: outer_step(theta0, agg, 0.4))
    return {"train": (train, (params, opt_state, batch)),
            "compress": (compress, (params, params)),
            "outer": (outer, (params, params))}


def planned(cfg, mesh_shape, micro_batch, seq_len, remat) -> dict:
    """The plan's bytes for each program's own buffers (every offload on: nothing else resident)."""
    plan = plan_memory(cfg, mesh_shape, micro_batch=micro_batch, seq_len=seq_len, remat=remat,
                       platform="cpu", offload=OFFLOADABLE)
    phases = plan["phases_bytes"]
    return {"train": phases["train"], "compress": phases["compress"], "outer": phases["outer"]}


def run(preset: str, mesh_spec: str, micro_batch: int, seq_len: int | None, remat: str, only,
        scheduler: str = "memory") -> list[dict]:
    cfg = load_model_config(preset).replace(remat_policy=remat)
    seq_len = seq_len or cfg.max_seq_len
    mesh_shape = parse_mesh_spec(mesh_spec)
    n = math.prod(mesh_shape.values())
    mesh = make_mesh(mesh_shape, jax.devices()[:n])
    plan = planned(cfg, mesh_shape, micro_batch, seq_len, remat)
    out = []
    for name, (fn, args) in programs(cfg, mesh, micro_batch, seq_len).items():
        if only and name not in only:
            continue
        compiled, lower_s, compile_s = compile_timed(fn, *args, scheduler=scheduler)
        xla = xla_bytes(compiled)
        row = {"preset": preset, "mesh": mesh_spec, "devices": n, "program": name, "micro_batch": micro_batch,
               "seq_len": seq_len, "remat": remat, "cpu_scheduler": scheduler, "xla": xla, "plan": plan[name],
               "ratio": plan[name] / xla["peak"] if xla["peak"] else None,
               "lower_s": round(lower_s, 1), "compile_s": round(compile_s, 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def table(rows: list[dict]) -> str:
    head = (f"{'preset':<13} {'mesh':<8} {'program':<9} {'xla args':>9} {'out-alias':>9} {'temp':>8} "
            f"{'xla peak':>9} {'plan':>9} {'plan/xla':>8} {'compile s':>9}")
    lines = [head + "   (GiB per device)", "-" * len(head)]
    for r in rows:
        x = r["xla"]
        flag = "" if r["ratio"] and abs(r["ratio"] - 1) <= TOLERANCE else "  *"
        lines.append(f"{r['preset']:<13} {r['mesh']:<8} {r['program']:<9} {x['argument'] / GIB:>9.2f} "
                     f"{(x['output'] - x['alias']) / GIB:>9.2f} {x['temp'] / GIB:>8.2f} {x['peak'] / GIB:>9.2f} "
                     f"{r['plan'] / GIB:>9.2f} {r['ratio']:>8.2f} {r['compile_s']:>9.1f}{flag}")
    schedulers = sorted({r["cpu_scheduler"] for r in rows})
    lines.append(f"* outside +-{TOLERANCE:.0%}; XLA:CPU scheduler: {', '.join(schedulers)}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help="model preset (repeatable; default covenant-72b)")
    ap.add_argument("--mesh", action="append", help="mesh spec (repeatable; default fsdp=8 and fsdp=64)")
    ap.add_argument("--micro-batch", type=int, default=1, help="sequences per device")
    ap.add_argument("--seq-len", type=int, default=None, help="default: the preset's max_seq_len")
    ap.add_argument("--remat", default="full", help="remat policy (the launchers plan with full)")
    ap.add_argument("--only", action="append", choices=("train", "compress", "outer"), help="programs to compile")
    ap.add_argument("--cpu-scheduler", choices=tuple(CPU_SCHEDULERS), default="memory",
                    help="XLA:CPU scheduler: memory-aware (as GPU/TPU schedule) or its concurrency-first default")
    args = ap.parse_args()
    rows = []
    for preset in args.preset or ["covenant-72b"]:
        for mesh in args.mesh or ["fsdp=8", "fsdp=64"]:
            rows += run(preset, mesh, args.micro_batch, args.seq_len, args.remat, args.only, args.cpu_scheduler)
    print(table(rows))


if __name__ == "__main__":
    main()
