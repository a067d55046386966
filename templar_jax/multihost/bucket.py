"""A bucket as every process of a multi-process neuron sees it: opened on process 0 only; sync
reads are agreed (every process gets process 0's bytes), writes happen once, on process 0.
The async operations (`aget`, `ahead`, ... : the gather's concurrent downloads) run only on
process 0 inside an agreed operation (e.g. `NeuronBase.gather`); elsewhere they raise."""

from __future__ import annotations

from typing import Callable

from templar_jax.multihost.agree import SoloAgreement
from templar_jax.multihost.errors import MultihostError
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.metadata import ObjectInfo

ASYNC_OPS = ("aput", "aget", "aget_range", "ahead", "alist", "adelete")


class AgreedBucket:
    def __init__(self, inner: Bucket | None, agreement: SoloAgreement, name: str):
        self._inner, self._agree, self.name = inner, agreement, name

    @classmethod
    def open(cls, agreement: SoloAgreement, name: str, open_bucket: Callable[[], Bucket]) -> "AgreedBucket":
        """`open_bucket()` on process 0 (its exception, if any, raised on every process)."""
        opened: list[Bucket] = []
        agreement.leader_only(f"bucket.open {name}", lambda: opened.append(open_bucket()))
        return cls(opened[0] if opened else None, agreement, name)

    def __repr__(self) -> str:
        return f"AgreedBucket({self.name}, {self._inner!r})"

    def __getattr__(self, attr: str):
        if attr in ASYNC_OPS or attr in ("location", "config"):
            if self._inner is None:
                raise MultihostError(f"bucket {self.name}: {attr} is process 0's alone (process "
                                     f"{self._agree.process_index} must receive it through an agreement)")
            return getattr(self._inner, attr)
        raise AttributeError(attr)

    # -- writes: process 0 -----------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        self._agree.leader_only(f"bucket.put {key}", lambda: self._inner.put(key, data))

    def delete(self, key: str) -> None:
        self._agree.leader_only(f"bucket.delete {key}", lambda: self._inner.delete(key))

    # -- reads: agreed -----------------------------------------------------------------------
    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self._agree.blob(f"bucket.get {key}", lambda: self._inner.get(key, max_bytes=max_bytes))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._agree.blob(f"bucket.get_range {key}", lambda: self._inner.get_range(key, start, end))

    def head(self, key: str) -> ObjectInfo | None:
        def read():
            info = self._inner.head(key)
            return None if info is None else list(info)

        raw = self._agree.value(f"bucket.head {key}", read)
        return None if raw is None else ObjectInfo(str(raw[0]), int(raw[1]), float(raw[2]))

    def list(self, prefix: str = "") -> list[str]:
        return list(self._agree.value(f"bucket.list {prefix}", lambda: self._inner.list(prefix)))

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
