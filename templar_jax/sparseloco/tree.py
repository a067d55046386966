"""Flat parameter names and which parameters carry a stacked `layers` axis.

Wing boundaries exchange plain nested dicts; payloads are keyed by flat names that join the
dict keys with "/" (`templar_jax.tree`).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from templar_jax.tree import flatten_params, unflatten_params

STACKED_PREFIX = "layers/"


def flatten(tree: Mapping[str, Any]) -> dict[str, Any]:
    """Nested (or already flat) dict -> {"a/b/c": leaf}."""
    return flatten_params(tree, strict=False)


unflatten = unflatten_params


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


def flat_shapes(params_like: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """{flat_name: shape} of a (nested or flat) dict of arrays, ShapeDtypeStructs or shape
    tuples."""
    return {n: tuple(int(s) for s in (v if isinstance(v, tuple) else getattr(v, "shape", None)
                                       or np.shape(v)))
            for n, v in flatten(params_like).items()}
