"""The tied embedding table under FSDP without a whole fp32 copy of it on any device.

The table [V, D] is stored fp32 and split over `fsdp` along D. Left to the SPMD partitioner, the
lookup and the tied logits each all-gathered it in fp32, and the backward built its whole fp32
gradient (one for the lookup, one for the logits) and all-reduced it before keeping a slice: for
covenant-72b on 8 devices about 4 x 8.6 GB per device beside the training state. Here, in a
shard_map over the mesh:

  lookup   each device gathers its fsdp group's tokens (a few KB), looks them up in its own
           D-slice of the table (in fp32; cast to the compute dtype after, which gives the same
           values as casting the table first) and an all-to-all hands every device its own rows
           with all of D. Backward: the gradient is scatter-added in fp32 straight into the
           device's slice; no [V, D] buffer exists.
  logits   the table's slice is cast to the compute dtype BEFORE the all-gather (bf16: half the
           bytes moved and held); logits = x @ table.T accumulated in fp32. Backward: the table's
           gradient is computed in fp32 in `LOGITS_GRAD_CHUNKS` slices of the vocabulary, each
           reduce-scattered (summed across devices in fp32) before the next, so one slice of the
           whole gradient exists at a time.

Forward values equal the replicated path's exactly; gradients differ only by summation order and
by staying fp32 where the replicated path rounds the table's gradient to bf16. Used when the mesh
splits the table over fsdp alone (tensor = 1, D divisible by fsdp, batch divisible by
data x fsdp); anything else keeps the replicated path (layers.Embed).
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

LOGITS_GRAD_CHUNKS = 8
BATCH = ("data", "fsdp")
TABLE = P(None, "fsdp")


def per_shard_table(mesh_shape: Mapping[str, int], table_shape: tuple[int, int], batch: int) -> bool:
    """Whether a mesh of these axis sizes splits the table over fsdp alone and the batch over
    data x fsdp (shape arithmetic: the planner asks it too)."""
    fsdp, tensor = mesh_shape.get("fsdp", 1), mesh_shape.get("tensor", 1)
    if tensor != 1 or fsdp == 1:
        return False
    return table_shape[1] % fsdp == 0 and batch % (mesh_shape.get("data", 1) * fsdp) == 0


def fsdp_table(mesh: Mesh | None, table_shape: tuple[int, int], batch: int) -> bool:
    """`per_shard_table` for a mesh (False without one)."""
    return mesh is not None and per_shard_table(dict(mesh.shape), table_shape, batch)


def lookup(table_VxD: jax.Array, tokens_BxL: jax.Array, mesh: Mesh, dtype) -> jax.Array:
    """table[tokens] in `dtype`, batch split over (data, fsdp) like the activations."""
    dtype = jnp.dtype(dtype)

    def local(table_Vxd, tokens_bxL):
        tokens_gxL = jax.lax.all_gather(tokens_bxL, "fsdp", axis=0, tiled=True)
        rows_gxLxd = jnp.take(table_Vxd, tokens_gxL, axis=0).astype(dtype)
        return jax.lax.all_to_all(rows_gxLxd, "fsdp", split_axis=0, concat_axis=2, tiled=True)

    return jax.shard_map(local, mesh=mesh, in_specs=(TABLE, P(BATCH, None)), out_specs=P(BATCH, None, None))(
        table_VxD, tokens_BxL.astype(jnp.int32))


def logits(x_BxLxD: jax.Array, table_VxD: jax.Array, mesh: Mesh, dtype) -> jax.Array:
    """x @ table.T in fp32 [B, L, V] (batch split like x), the table gathered in `dtype`."""
    return _logits(x_BxLxD, table_VxD, mesh, jnp.dtype(dtype))


def _gathered(table_Vxd, dtype):
    return jax.lax.all_gather(table_Vxd.astype(dtype), "fsdp", axis=1, tiled=True)


def _logits_local(x_bxLxD, table_Vxd, dtype):
    w_VxD = _gathered(table_Vxd, dtype)
    return jnp.einsum("bld,vd->blv", x_bxLxD.astype(dtype), w_VxD, preferred_element_type=jnp.float32)


def _grads_local(x_bxLxD, table_Vxd, g_bxLxV, dtype, x_dtype):
    w_VxD = _gathered(table_Vxd, dtype)
    dx = jnp.einsum("blv,vd->bld", g_bxLxV, w_VxD, preferred_element_type=jnp.float32).astype(x_dtype)
    x = x_bxLxD.astype(dtype)
    v = table_Vxd.shape[0]
    step = -(-v // LOGITS_GRAD_CHUNKS)
    parts = []
    for start in range(0, v, step):  # one vocabulary slice of the fp32 gradient at a time
        g_c = jax.lax.slice_in_dim(g_bxLxV, start, min(start + step, v), axis=2)
        dw_c = jnp.einsum("blv,bld->vd", g_c, x, preferred_element_type=jnp.float32)
        parts.append(jax.lax.psum_scatter(dw_c.astype(table_Vxd.dtype), "fsdp", scatter_dimension=1, tiled=True))
    dw = jnp.concatenate(parts, axis=0)
    return dx, jax.lax.psum(dw, "data") if jax.lax.axis_size("data") > 1 else dw


def _specs():
    return (P(BATCH, None, None), TABLE)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _logits(x, table, mesh, dtype):
    fn = functools.partial(_logits_local, dtype=dtype)
    return jax.shard_map(fn, mesh=mesh, in_specs=_specs(), out_specs=P(BATCH, None, None))(x, table)


def _logits_fwd(x, table, mesh, dtype):
    return _logits(x, table, mesh, dtype), (x, table)


def _logits_bwd(mesh, dtype, residuals, g):
    # check_vma off: the table's gradient is made equal across `data` by the explicit psum
    x, table = residuals
    fn = functools.partial(_grads_local, dtype=dtype, x_dtype=x.dtype)
    return jax.shard_map(fn, mesh=mesh, in_specs=(*_specs(), P(BATCH, None, None)), out_specs=_specs(),
                         check_vma=False)(x, table, g)


_logits.defvjp(_logits_fwd, _logits_bwd)
