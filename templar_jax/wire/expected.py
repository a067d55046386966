"""The model's parameter table as the wire decoder sees it: flat name -> (shape, batch_dims).

The decoder derives every array size from this table (never from the peer's header), so a
hostile header cannot make it allocate more than the model's own payload needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from templar_jax.sparseloco.geometry import ChunkGeometry, chunk_geometry
from templar_jax.tree import flatten_params

LAYER_PREFIX = "layers/"


class ExpectedTensor(NamedTuple):
    """One parameter: full shape (batch dims first) and how many leading dims are a batch."""

    shape: tuple[int, ...]
    batch_dims: int = 0

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[: self.batch_dims])

    @property
    def tensor_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[self.batch_dims :])

    @property
    def batch_size(self) -> int:
        n = 1
        for s in self.batch_shape:
            n *= s
        return n

    def geometry(self, *, chunk: int = 64, topk: int = 64) -> ChunkGeometry:
        return chunk_geometry(self.tensor_shape, chunk=chunk, topk=topk)


ExpectedTable = dict[str, ExpectedTensor]


def default_batch_dims(name: str) -> int:
    """Stacked layer params (`layers/...`) carry one leading batch axis; all others none."""
    return 1 if name.startswith(LAYER_PREFIX) else 0


def _as_shape(value: Any) -> tuple[int, ...]:
    shape = getattr(value, "shape", value)
    return tuple(int(s) for s in shape)


def expected_table(
    params_or_shapes: Mapping[str, Any], *, batch_dims: Mapping[str, int] | None = None
) -> ExpectedTable:
    """Build the table from a nested params dict (arrays or ShapeDtypeStructs), a flat
    {name: shape} dict, or a dict already holding ExpectedTensor values.

    `batch_dims` overrides the default rule (`layers/` prefix => 1, else 0) per name.
    """
    overrides = dict(batch_dims or {})
    table: ExpectedTable = {}
    for name, value in flatten_params(params_or_shapes, strict=False).items():
        if isinstance(value, ExpectedTensor):
            table[name] = value
            continue
        shape = _as_shape(value)
        b = overrides.get(name, default_batch_dims(name))
        if not 0 <= b <= len(shape) or len(shape) - b not in (1, 2):
            raise ValueError(f"{name}: shape {shape} with batch_dims {b} is not a batch of 1-D/2-D tensors")
        table[name] = ExpectedTensor(shape, b)
    return table
