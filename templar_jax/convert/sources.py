"""Where to-hf reads our params from, one tensor (or one layer slice) at a time.

- `TreeSource`: an in-memory params tree (nested dict or flat names; numpy or
  jax arrays, sharded or not). Slicing a sharded jax array by layer before
  `np.asarray` moves only that layer to the host.
- `OrbaxSource`: a checkpoint written by `templar_jax.checkpoint.LocalCheckpoints`.
  Reads the OCDBT store with tensorstore directly, so a stacked [L, ...] tensor
  is read layer by layer and a 72B export never materializes the whole model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from templar_jax.convert.mapping import ConversionError


class TreeSource:
    """Params from a nested dict (or flat "/" names) of arrays."""

    def __init__(self, params: Mapping[str, Any]):
        from templar_jax.model.params import flatten_params

        flat = dict(params) if any("/" in k for k in params) else flatten_params(params)
        self._flat = flat
        self.meta: dict = {}

    def names(self) -> list[str]:
        return list(self._flat)

    def shape(self, name: str) -> tuple[int, ...]:
        if name not in self._flat:
            raise ConversionError(f"params have no {name!r}")
        return tuple(self._flat[name].shape)

    def read(self, name: str, layer: Optional[int] = None) -> np.ndarray:
        if name not in self._flat:
            raise ConversionError(f"params have no {name!r}")
        value = self._flat[name]
        return np.asarray(value if layer is None else value[layer])


def _find_step_dir(path: Path, step: Optional[int]) -> Path:
    if (path / "params").is_dir():
        return path
    steps = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit()
                   and (p / "params").is_dir())
    if not steps:
        raise ConversionError(f"{path}: not an orbax checkpoint (no step dirs with params/)")
    chosen = steps[-1] if step is None else step
    if chosen not in steps:
        raise ConversionError(f"{path}: no step {step}; have {steps}")
    return path / str(chosen)


class OrbaxSource:
    """Params of one step of a LocalCheckpoints directory (or the step directory itself)."""

    def __init__(self, path: str | Path, step: Optional[int] = None):
        import tensorstore as ts

        self._ts = ts
        self.step_dir = _find_step_dir(Path(path).absolute(), step)
        params_dir = self.step_dir / "params"
        self._base = f"file://{params_dir}/"
        kv = ts.KvStore.open({"driver": "ocdbt", "base": self._base}).result()
        keys = [k.decode() for k in kv.list().result()]
        self._drivers = {}
        for key in keys:
            head, _, tail = key.rpartition("/")
            if tail == ".zarray":
                self._drivers[head] = "zarr"
            elif tail == "zarr.json":
                self._drivers[head] = "zarr3"
        if not self._drivers:
            raise ConversionError(f"{params_dir}: no arrays found in the OCDBT store")
        self._open: dict[str, Any] = {}
        meta_file = self.step_dir / "meta" / "metadata"
        self.meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}

    @staticmethod
    def _key(name: str) -> str:
        return name.replace("/", ".")  # orbax joins nested dict keys with "."

    def names(self) -> list[str]:
        return [k.replace(".", "/") for k in self._drivers]

    def _array(self, name: str):
        key = self._key(name)
        if key not in self._drivers:
            raise ConversionError(f"{self.step_dir}: checkpoint has no {name!r}")
        if key not in self._open:
            spec = {"driver": self._drivers[key],
                    "kvstore": {"driver": "ocdbt", "base": self._base, "path": key}}
            self._open[key] = self._ts.open(spec, read=True).result()
        return self._open[key]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._array(name).shape)

    def read(self, name: str, layer: Optional[int] = None) -> np.ndarray:
        arr = self._array(name)
        return np.asarray((arr if layer is None else arr[layer]).read().result())
