"""The working params' move when a late outer step lands (overlapped outer steps, docs/overlap.md).

A miner that keeps training window W+1 while W's aggregate is in flight started those inner steps
from x_base (its params at the end of W). When theta_{W+1} = theta_W - alpha * agg_W arrives after
k steps, the k steps' progress is carried onto the new global params:

    x <- theta_{W+1} + (x - x_base)

and W+1's pseudo-gradient is measured from theta_{W+1}, so each inner step lands in exactly one
delta. The global params themselves never depend on this (only on published aggregates).
"""

from __future__ import annotations

import jax


@jax.jit
def rebase(theta_new, x, x_base):
    """theta_new + (x - x_base) per leaf, in x's dtype. theta_new may lack x's leading replica
    axis (the experiment's vmapped replicas): it broadcasts."""
    return jax.tree.map(lambda t, a, b: (t + (a - b)).astype(a.dtype), theta_new, x, x_base)
