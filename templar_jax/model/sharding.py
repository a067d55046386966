"""Logical-axis sharding: one rules table maps logical names to mesh axes (MaxText style).

Mesh axes are always ("data", "fsdp", "tensor"). Parameters shard their `embed` dimension
over fsdp and their head/mlp/vocab dimensions over tensor; the batch of activations is split
over (data, fsdp). A dimension whose size is not divisible by its mesh axes is replicated
instead (so tiny test models still run on any mesh).
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from templar_jax.model.config import ModelConfig
from templar_jax.model.param_table import param_table
from templar_jax.tree import unflatten_params

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axis (or tuple of mesh axes, or None = replicated)
LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    # parameters
    "embed": "fsdp",
    "mlp": "tensor",
    "heads": "tensor",
    "kv_heads": "tensor",
    "vocab": "tensor",
    "layers": None,
    # activations
    "batch": ("data", "fsdp"),
    "length": None,
    "act_embed": None,
    "act_heads": "tensor",
    "act_kv_heads": "tensor",
    "act_mlp": "tensor",
    "act_vocab": "tensor",
    "head_dim": None,
}


class MeshSpecError(ValueError):
    """A mesh specification is malformed or does not match the available devices."""


def parse_mesh_spec(spec: str | Mapping[str, int] | None) -> dict[str, int]:
    """"data=1,fsdp=8" or {"fsdp": 8} -> {"data": 1, "fsdp": 8, "tensor": 1} (missing axes = 1)."""
    if spec is None or spec == "":
        sizes: dict[str, int] = {}
    elif isinstance(spec, str):
        sizes = {}
        for part in spec.replace(" ", "").split(","):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or not value.isdigit():
                raise MeshSpecError(f"mesh entry {part!r} is not AXIS=INT")
            sizes[name] = int(value)
    else:
        sizes = {str(k): int(v) for k, v in spec.items()}
    unknown = sorted(set(sizes) - set(MESH_AXES))
    if unknown:
        raise MeshSpecError(f"unknown mesh axes {unknown}; use {MESH_AXES}")
    if any(v <= 0 for v in sizes.values()):
        raise MeshSpecError(f"mesh axis sizes must be positive: {sizes}")
    return {axis: sizes.get(axis, 1) for axis in MESH_AXES}


def make_mesh(spec: str | Mapping[str, int] | None = None, devices=None) -> Mesh:
    """Build a ("data", "fsdp", "tensor") mesh; with no spec, all devices go to fsdp."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = parse_mesh_spec(spec)
    if spec is None or spec == "":
        sizes["fsdp"] = len(devices)
    shape = tuple(sizes[a] for a in MESH_AXES)
    if math.prod(shape) != len(devices):
        raise MeshSpecError(f"mesh {sizes} needs {math.prod(shape)} devices, have {len(devices)}")
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * 3, devices=devices
    )


def mesh_axis_size(mesh_shape: Mapping[str, int], rule: str | tuple[str, ...] | None) -> int:
    if rule is None:
        return 1
    names = (rule,) if isinstance(rule, str) else rule
    return math.prod(mesh_shape.get(n, 1) for n in names)


def logical_to_spec(
    logical_axes: tuple[str | None, ...],
    shape: tuple[int, ...] | None = None,
    mesh_shape: Mapping[str, int] | None = None,
) -> P:
    """Map logical axis names to a PartitionSpec; with shape+mesh_shape, drop indivisible splits."""
    out = []
    used: set[str] = set()
    for i, name in enumerate(logical_axes):
        rule = LOGICAL_RULES.get(name) if name is not None else None
        names = () if rule is None else ((rule,) if isinstance(rule, str) else tuple(rule))
        if any(n in used for n in names):  # a mesh axis may shard only one dimension
            rule, names = None, ()
        if rule is not None and shape is not None and mesh_shape is not None:
            if shape[i] % mesh_axis_size(mesh_shape, rule):
                rule, names = None, ()
        if rule is not None and mesh_shape is not None and mesh_axis_size(mesh_shape, rule) == 1:
            rule, names = None, ()
        used.update(names)
        out.append(rule)
    return P(*out)


def named_sharding(mesh: Mesh, logical_axes, shape=None) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(tuple(logical_axes), shape, dict(mesh.shape)))


def param_shardings(cfg: ModelConfig, mesh: Mesh) -> dict:
    """NamedSharding for every parameter, as a nested dict with the parameter layout."""
    return unflatten_params({name: named_sharding(mesh, spec.logical_axes, spec.shape)
                             for name, spec in param_table(cfg).items()})


def constrain(x: jax.Array, mesh: Mesh | None, *logical_axes: str | None) -> jax.Array:
    """Sharding constraint on an activation (no-op without a mesh)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, named_sharding(mesh, logical_axes, x.shape))
