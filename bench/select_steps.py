"""Dependent steps of the compression kernel's radix select on typical tiles (CPU is enough).

The kernel's time per tile is dominated by a chain of full-tile counts, one per step. The full
select always takes 31 (threshold) + 12 (index tie-break) steps for a 64x64 tile and k = 64 at
one bit per step (16 + 6 at two: `KernelConfig(radix_bits=2)`, 2^bits - 1 independent counts
per step); `KernelConfig(select="early")` stops the threshold descent once exactly k entries
qualify and skips the tie-break when every tie is needed. This prints how many dependent steps
(and counts) that leaves, per kind of tile and radix, as one JSON line each and a summary line.

    python bench/select_steps.py --tiles 2000 --radix-bits 1,2,3
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco.kernels.tile_select import exact_k_descent, magnitude_bits

THRESHOLD_BITS, INDEX_BITS = 31, 12  # magnitude bits; index bits of a 4096-entry tile


def full_steps(radix_bits: int) -> tuple[int, int]:
    """(threshold, index tie-break) dependent steps of the full select."""
    return -(-THRESHOLD_BITS // radix_bits), -(-INDEX_BITS // radix_bits)


def tile_kinds(rng, n: int) -> dict[str, np.ndarray]:
    gauss = rng.standard_normal((n, 64, 64))
    return {
        "gaussian_1e-3": (gauss * 1e-3).astype(np.float32),  # error-feedback-like scale
        "laplace": rng.laplace(size=(n, 64, 64)).astype(np.float32),
        "bf16_rounded_gaussian": np.asarray(jnp.asarray(gauss, jnp.bfloat16), np.float32),
        "integers_-3..3": rng.integers(-3, 4, (n, 64, 64)).astype(np.float32),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, default=2000, help="tiles per kind")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--radix-bits", type=lambda t: [int(b) for b in t.split(",")],
                    default=[1, 2], help="bits per step, comma separated")
    args = ap.parse_args()
    kinds = tile_kinds(np.random.default_rng(args.seed), args.tiles)
    for r in args.radix_bits:
        descent = jax.jit(jax.vmap(lambda x, r=r: exact_k_descent(magnitude_bits(x), args.k, r)))
        thr_steps, idx_steps = full_steps(r)
        full = thr_steps + idx_steps
        for kind, tiles in kinds.items():
            t, steps = (np.asarray(a) for a in descent(jnp.asarray(tiles)))
            bits = np.asarray(magnitude_bits(jnp.asarray(tiles))).reshape(len(tiles), -1)
            above = (bits > t[:, None]).sum(axis=1)
            tied = (bits == t[:, None]).sum(axis=1)
            tie_break = tied > args.k - above  # some ties must be left out: the index pass runs
            early_steps = steps + idx_steps * tie_break
            counts = (2 ** r - 1) * early_steps  # full-tile counts: the work, not the latency
            print(json.dumps({"tiles": kind, "n": len(tiles), "radix_bits": r,
                              "descent_steps_mean": float(steps.mean()),
                              "descent_steps_max": int(steps.max()),
                              "tie_break_fraction": float(tie_break.mean()),
                              "early_steps_mean": float(early_steps.mean()),
                              "early_counts_mean": float(counts.mean()),
                              "full_steps": full, "full_counts": (2 ** r - 1) * full}),
                  flush=True)
            print(f"# radix {r}, {kind}: {early_steps.mean():.1f} dependent steps per tile with "
                  f"early exit vs {full} full ({full / early_steps.mean():.2f}x fewer; "
                  f"{counts.mean():.1f} counts)", flush=True)

if __name__ == "__main__":
    main()
