"""Dependent steps of the compression kernel's radix select on typical tiles (CPU is enough).

The kernel's time per tile is dominated by a chain of full-tile counts, one per step. The full
select always takes 31 (threshold) + 12 (index tie-break) steps for a 64x64 tile and k = 64;
`TEMPLAR_KERNEL_SELECT=early` stops the threshold descent once exactly k entries qualify and
skips the tie-break when every tie is needed. This prints how many steps that leaves, per kind
of tile, as one JSON line each and a summary line.

    python bench/select_steps.py --tiles 2000
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from templar_jax.sparseloco.kernels.tile_select import exact_k_descent, magnitude_bits

FULL_STEPS = 31 + 12  # threshold descent + index tie-break over 4096 entries


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
    args = ap.parse_args()
    descent = jax.jit(jax.vmap(lambda x: exact_k_descent(magnitude_bits(x), args.k)))
    for kind, tiles in tile_kinds(np.random.default_rng(args.seed), args.tiles).items():
        t, steps = (np.asarray(a) for a in descent(jnp.asarray(tiles)))
        bits = np.asarray(magnitude_bits(jnp.asarray(tiles))).reshape(len(tiles), -1)
        above = (bits > t[:, None]).sum(axis=1)
        tied = (bits == t[:, None]).sum(axis=1)
        tie_break = tied > args.k - above  # some ties must be left out: the 12-step pass runs
        early_steps = steps + 12 * tie_break
        print(json.dumps({"tiles": kind, "n": len(tiles), "descent_steps_mean": float(steps.mean()),
                          "descent_steps_max": int(steps.max()),
                          "tie_break_fraction": float(tie_break.mean()),
                          "early_steps_mean": float(early_steps.mean()),
                          "full_steps": FULL_STEPS}), flush=True)
        print(f"# {kind}: {early_steps.mean():.1f} dependent steps per tile with early exit "
              f"vs {FULL_STEPS} ({FULL_STEPS / early_steps.mean():.2f}x fewer)", flush=True)


if __name__ == "__main__":
    main()
