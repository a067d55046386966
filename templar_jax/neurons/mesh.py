"""The device mesh a neuron runs its model on (run config `mesh.spec`), on one host.

One device: no mesh at all (plain jit, the demo's path). Several: `auto` puts every device on
the fsdp axis; an explicit spec ("data=1,fsdp=4,tensor=2") must use all of them. Params, the
inner optimizer state, the error feedback and the outer step then stay sharded, and SparseLoCo
compresses per shard where shards hold whole chunks. On several processes (jax.distributed)
`jax.devices()` is every process's devices, so the mesh spans them (`templar_jax.multihost`).
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh

from templar_jax.model.sharding import make_mesh


def neuron_mesh(spec: Any, devices=None) -> Mesh | None:
    devices = list(jax.devices() if devices is None else devices)
    if len(devices) == 1:
        return None
    return make_mesh(None if spec in (None, "auto") else spec, devices)
