"""Flat "/"-joined names <-> nested dict parameter trees (the wire/checkpoint naming), shared by
every wing; pure Python so importing it pulls in neither jax nor flax."""

from __future__ import annotations

from typing import Any, Mapping


class ParamTreeError(ValueError):
    """A parameter tree or flat name table is malformed (bad key, name clash)."""


def flatten_params(tree: Mapping[str, Any], prefix: str = "", *, strict: bool = True) -> dict[str, Any]:
    """{"layers": {"attn": {"wq": a}}} -> {"layers/attn/wq": a} (insertion order kept).

    strict=False also accepts keys that are already flat names ("layers/attn/wq": a)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if not isinstance(key, str) or not key or (strict and "/" in key):
            raise ParamTreeError(f"parameter key {key!r} must be a non-empty str without '/'")
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, name + "/", strict=strict))
        else:
            flat[name] = value
    return flat


def unflatten_params(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of flatten_params."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        parts = name.split("/")
        if any(not p for p in parts):
            raise ParamTreeError(f"bad parameter name {name!r}")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ParamTreeError(f"{name!r} clashes with a leaf at {part!r}")
            node = child
        if parts[-1] in node:
            raise ParamTreeError(f"duplicate or clashing parameter name {name!r}")
        node[parts[-1]] = value
    return tree
