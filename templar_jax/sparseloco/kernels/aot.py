"""Lowering the kernels for a GPU on a machine without one (tests, bench/kernel_resources.py).

jax 0.10 lowers Pallas Triton kernels for an abstract GPU; jax 0.11 (the device image's version)
reads the target's compute capability while lowering and, with no GPU attached, takes it from an
abstract device on the ambient abstract mesh. `gpu_target()` provides one, so the same lowering
runs under both versions.
"""

from __future__ import annotations

import contextlib

import jax

DEFAULT_GPU_KIND = "NVIDIA H200"  # the device the project's GPU numbers come from (sm_90)


def gpu_target(device_kind: str = DEFAULT_GPU_KIND):
    """Context in which `jit(...).trace(...).lower(lowering_platforms=("cuda",))` targets
    `device_kind` (a name jax's Pallas GPU table knows, e.g. "NVIDIA H100"). A no-op on jax
    versions without abstract devices, which need none."""
    abstract_device = getattr(jax.sharding, "AbstractDevice", None)
    if abstract_device is None:
        return contextlib.nullcontext()
    from jax.sharding import AbstractMesh, AxisType

    device = abstract_device(device_kind=device_kind, num_cores=None, platform="cuda")
    # Auto axes: an Explicit mesh would put sharding types on every value inside the kernels
    mesh = AbstractMesh((1,), ("aot",), axis_types=(AxisType.Auto,), abstract_device=device)
    return jax.sharding.use_abstract_mesh(mesh)
