"""The parameter table: every parameter's name, shape, logical axes, initializer and whether it
is stacked over layers, written once.

Everything else is derived from it: the NNX layers create their `nnx.Param`s from these specs
(layers.py), and `param_shapes`, `param_logical_axes`, `param_batch_dims`, `param_count`,
the shardings (sharding.param_shardings), the abstract params (api.abstract_params), the
memory plan (plan.py) and the Hugging Face mapping (convert/mapping.py) read it. Pure shape
arithmetic: no jax import, instant for 72B.

Stacked parameters (`stacked=True`) carry a leading [n_layers] axis with the logical name
`layers`; each of their L slices is one decoder layer's tensor (SparseLoCo compresses and
normalises every slice on its own, the converter writes it as `model.layers.{i}.*`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import MappingProxyType
from typing import Mapping

from templar_jax.model.config import ModelConfig
from templar_jax.tree import unflatten_params

INIT_STD = 0.02  # LLaMA / HF initializer_range


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One parameter as stored: `shape` includes the leading [L] axis when `stacked`."""

    shape: tuple[int, ...]
    logical_axes: tuple[str, ...]
    init: str  # "normal": INIT_STD * N(0, 1); "ones": RMSNorm scales
    stacked: bool

    @property
    def batch_dims(self) -> int:
        """Leading axes that index independent tensors (1 for stacked layer params, else 0)."""
        return int(self.stacked)

    @property
    def layer_shape(self) -> tuple[int, ...]:
        """Shape of one slice: what a layer module creates (stacking adds the [L] axis)."""
        return self.shape[self.batch_dims:]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def _top(shape: tuple[int, ...], axes: tuple[str, ...], init: str = "normal") -> ParamSpec:
    return ParamSpec(shape, axes, init, stacked=False)


@functools.lru_cache(maxsize=64)
def param_table(cfg: ModelConfig) -> Mapping[str, ParamSpec]:
    """{flat name: ParamSpec}, in creation order (embed, layer tensors, final norm, lm_head);
    read-only, cached per config."""
    L, D, F, V = cfg.n_layers, cfg.d_model, cfg.d_ff, cfg.vocab_size
    hq, hkv = cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim

    def layer(shape: tuple[int, ...], axes: tuple[str, ...], init: str = "normal") -> ParamSpec:
        return ParamSpec((L, *shape), ("layers", *axes), init, stacked=True)

    table = {
        "embed/embedding": _top((V, D), ("vocab", "embed")),
        "layers/attn_norm/scale": layer((D,), ("embed",), "ones"),
        "layers/attn/wq": layer((D, hq), ("embed", "heads")),
        "layers/attn/wk": layer((D, hkv), ("embed", "kv_heads")),
        "layers/attn/wv": layer((D, hkv), ("embed", "kv_heads")),
        "layers/attn/wo": layer((hq, D), ("heads", "embed")),
        "layers/mlp_norm/scale": layer((D,), ("embed",), "ones"),
        "layers/mlp/w_gate": layer((D, F), ("embed", "mlp")),
        "layers/mlp/w_up": layer((D, F), ("embed", "mlp")),
        "layers/mlp/w_down": layer((F, D), ("mlp", "embed")),
        "final_norm/scale": _top((D,), ("embed",), "ones"),
    }
    if not cfg.tie_embeddings:
        table["lm_head/kernel"] = _top((D, V), ("embed", "vocab"))
    return MappingProxyType(table)


def flat_param_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{flat name: shape}."""
    return {name: spec.shape for name, spec in param_table(cfg).items()}


def param_shapes(cfg: ModelConfig) -> dict:
    """Shape tuple per parameter, as a nested dict with the parameter layout."""
    return unflatten_params(flat_param_shapes(cfg))


def param_logical_axes(cfg: ModelConfig) -> dict:
    """Logical axis names per parameter (docs/interfaces.md layout), nested."""
    return unflatten_params({n: s.logical_axes for n, s in param_table(cfg).items()})


def param_batch_dims(cfg: ModelConfig) -> dict[str, int]:
    """{flat name: leading stacked axes} (1 for layer params, 0 otherwise): the `batch_dims`
    that sparseloco's compress/aggregate and the wire's expected table take."""
    return {name: spec.batch_dims for name, spec in param_table(cfg).items()}


def param_count(cfg: ModelConfig, untied: bool = False) -> int:
    """Number of parameters; `untied=True` counts a tied embedding twice (HF export view)."""
    total = sum(spec.size for spec in param_table(cfg).values())
    if untied and cfg.tie_embeddings:
        total += embedding_param_count(cfg)
    return total


def layer_param_count(cfg: ModelConfig) -> int:
    """Parameters of one decoder layer (one slice of every stacked parameter)."""
    return sum(math.prod(s.layer_shape) for s in param_table(cfg).values() if s.stacked)


def embedding_param_count(cfg: ModelConfig) -> int:
    """Input-embedding table size (excluded from the 6*N FLOP count)."""
    return param_table(cfg)["embed/embedding"].size
