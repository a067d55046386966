"""A bucket as every process of a multi-process neuron sees it: opened on process 0 only; sync
reads are agreed (every process gets process 0's bytes), writes happen once, on process 0.
The async operations (`aget`, `ahead`, ... : the gather's concurrent downloads) run only on
process 0 inside an agreed operation (e.g. `NeuronBase.gather`); elsewhere they raise.
`local()` is the one way around the agreement: this process's own read handle, for reads whose
bytes are then checked against an agreed digest (`neurons.host_reads`)."""

from __future__ import annotations

from typing import Callable

from templar_jax.multihost.agree import SoloAgreement, solo
from templar_jax.multihost.errors import MultihostError
from templar_jax.storage.bucket import Bucket
from templar_jax.storage.metadata import ObjectInfo

ASYNC_OPS = ("aput", "aput_file", "aget", "aget_range", "ahead", "alist", "adelete")


class AgreedBucket:
    def __init__(self, inner: Bucket | None, agreement: SoloAgreement, name: str, *,
                 opener: Callable[[], Bucket] | None = None):
        self._inner, self._agree, self.name = inner, agreement, name
        self._opener = opener
        self._local: Bucket | None = None  # a process other than 0's own handle (`local()`)

    @classmethod
    def lazy(cls, agreement: SoloAgreement, name: str, open_bucket: Callable[[], Bucket]) -> "AgreedBucket":
        """Opened on process 0 at its first use, inside that use's agreement (so its failure is
        that operation's, seen by every process). Opening needs no agreement of its own, so a
        process may open it at another point of its run than process 0 (e.g. a peer directory
        that process 0 filled inside an agreed operation)."""
        return cls(None, agreement, name, opener=open_bucket)

    def _bucket(self) -> Bucket:
        if self._inner is None and self._opener is not None and self._agree.leader:
            self._inner = self._opener()
        if self._inner is None:
            raise MultihostError(f"bucket {self.name}: only process 0 uses it directly (process "
                                 f"{self._agree.process_index} receives through an agreement)")
        return self._inner

    @classmethod
    def open(cls, agreement: SoloAgreement, name: str, open_bucket: Callable[[], Bucket]) -> "AgreedBucket":
        """`open_bucket()` on process 0 (its exception, if any, raised on every process)."""
        opened: list[Bucket] = []
        agreement.leader_only(f"bucket.open {name}", lambda: opened.append(open_bucket()))
        return cls(opened[0] if opened else None, agreement, name)

    @property
    def agreement(self) -> SoloAgreement:
        return self._agree

    def local(self) -> Bucket:
        """This process's own Bucket for reads off the agreed path: process 0's bucket there;
        elsewhere opened here on first use with the same opener (a peer's bucket, from the read
        access its agreed commitment publishes). Raises MultihostError where there is no opener
        (a bucket process 0 opened alone, e.g. this neuron's own)."""
        if self._agree.leader:
            return self._bucket()
        if self._local is None:
            if self._opener is None:
                raise MultihostError(f"bucket {self.name}: process {self._agree.process_index} cannot open it "
                                     f"itself (opened by process 0 alone)")
            self._local = self._opener()
        return self._local

    def __repr__(self) -> str:
        return f"AgreedBucket({self.name}, {self._inner!r})"

    def __getattr__(self, attr: str):
        if attr in ASYNC_OPS or attr in ("location", "config"):
            return getattr(self._bucket(), attr)
        raise AttributeError(attr)

    # -- writes: process 0 -----------------------------------------------------------------
    def put(self, key: str, data: bytes) -> None:
        self._agree.leader_only(f"bucket.put {key}", lambda: self._bucket().put(key, data))

    def put_file(self, key: str, path) -> None:
        self._agree.leader_only(f"bucket.put {key}", lambda: self._bucket().put_file(key, path))

    def delete(self, key: str) -> None:
        self._agree.leader_only(f"bucket.delete {key}", lambda: self._bucket().delete(key))

    # -- reads: agreed -----------------------------------------------------------------------
    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        return self._agree.blob(f"bucket.get {key}", lambda: self._bucket().get(key, max_bytes=max_bytes))

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._agree.blob(f"bucket.get_range {key}", lambda: self._bucket().get_range(key, start, end))

    def head(self, key: str) -> ObjectInfo | None:
        def read():
            info = self._bucket().head(key)
            return None if info is None else list(info)

        raw = self._agree.value(f"bucket.head {key}", read)
        return None if raw is None else ObjectInfo(str(raw[0]), int(raw[1]), float(raw[2]))

    def list(self, prefix: str = "") -> list[str]:
        return list(self._agree.value(f"bucket.list {prefix}", lambda: self._bucket().list(prefix)))

    def close(self) -> None:
        if self._inner is not None:
            self._bucket().close()
        if self._local is not None:
            self._local.close()


def local_bucket(bucket) -> Bucket:
    """The Bucket this process reads `bucket` through off the agreed path (a plain one: itself)."""
    return bucket.local() if isinstance(bucket, AgreedBucket) else bucket


def agreement_of(bucket) -> SoloAgreement:
    """The agreement a bucket's reads go through (a plain Bucket: this process alone)."""
    return bucket.agreement if isinstance(bucket, AgreedBucket) else solo()
