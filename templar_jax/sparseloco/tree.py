"""Flat parameter names and which parameters carry a stacked `layers` axis.

Wing boundaries exchange plain nested dicts; payloads are keyed by flat names that join the
dict keys with "/" (same convention as `templar_jax.model.params.flatten_params`). Kept local so
the compression code does not depend on the model wing.
"""

from __future__ import annotations

from typing import Any, Mapping

STACKED_PREFIX = "layers/"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"a/b/c": leaf}. Non-dict values are leaves."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{"a/b/c": leaf} -> nested dict (inverse of `flatten`)."""
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        node = tree
        *parents, leaf = name.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def batch_dims_from_names(params: Mapping[str, Any]) -> dict[str, int]:
    """{flat_name: 1 if the name starts with "layers/" else 0}.

    Every `layers/...` parameter is stacked [L, ...] (docs/interfaces.md); each of its L slices
    is an independent reference tensor with its own quantizer statistics and norm.
    """
    flat = params if all(not isinstance(v, Mapping) for v in params.values()) else flatten(params)
    return {name: int(name.startswith(STACKED_PREFIX)) for name in flat}


def restructure(like: Mapping[str, Any], flat: Mapping[str, Any], prefix: str = "") -> dict:
    """Values of `flat` arranged in the (nested or flat) dict structure of `like`."""
    out: dict[str, Any] = {}
    for key, value in like.items():
        name = f"{prefix}{key}"
        out[key] = restructure(value, flat, name + "/") if isinstance(value, Mapping) else flat[name]
    return out
