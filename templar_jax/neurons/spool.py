"""A window's accepted payloads kept on local disk, read back one tensor at a time.

The validator gathers every miner, but must not hold every miner's payload in memory: at 72B a
payload is ~1.4 GB on the wire and ~5.5 GB decoded. Each payload the gather accepts (a full
decode checked it) is written here as its wire bytes and dropped from memory; `SpooledPayload`
is a read-only `Mapping[name, TensorPayload]` that decodes one tensor from the file when asked.
Everything that walks a payload tensor by tensor (norms, densify, aggregation, copy detection)
then holds one tensor of it at a time, and the decoded values are the same bytes' decode, so
every result is bit-identical to holding the whole payloads.
"""

from __future__ import annotations

import mmap
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

from templar_jax.protocol.codec import PayloadCodec
from templar_jax.sparseloco import TensorPayload


class SpooledPayload(Mapping):
    """One peer's accepted payload on disk: name -> TensorPayload, decoded on each access."""

    def __init__(self, path: Path, names: tuple[str, ...], codec: PayloadCodec):
        self.path, self.names, self.codec = path, names, codec

    def __getitem__(self, name: str) -> TensorPayload:
        if name not in self.names:
            raise KeyError(name)
        # mapped, not read: only the prefix, the header and this tensor's arrays are touched (at
        # 72B a tensor is a tenth of a 1.4 GB file); the decoded arrays are copies, so the map
        # (and its file descriptor) is closed before returning
        with open(self.path, "rb") as f:
            mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            return self.codec.decode(mapped, names=(name,))[0][name]
        finally:
            try:
                mapped.close()
            except BufferError:  # a view still held (a raised error's frames): closes when it goes
                pass

    def __contains__(self, name: object) -> bool:  # Mapping's default would decode
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"SpooledPayload({self.path.name}, {len(self.names)} tensors)"


class SpooledBytes(Mapping):
    """uid -> the wire bytes of its spooled payload, read from disk on each access."""

    def __init__(self, payloads: Mapping[int, SpooledPayload]):
        self._payloads = payloads

    def __getitem__(self, uid: int) -> bytes:
        return self._payloads[uid].path.read_bytes()

    def __iter__(self) -> Iterator[int]:
        return iter(self._payloads)

    def __len__(self) -> int:
        return len(self._payloads)


class PayloadSpool:
    """A folder holding one window's accepted payloads (`window-{W}/{uid}.tjxw`); `clear()`
    removes everything (the validator clears it when a window is done and before the next)."""

    def __init__(self, root: str | Path, codec: PayloadCodec):
        self.root, self.codec = Path(root), codec

    def put(self, window: int, uid: int, data: bytes, names: tuple[str, ...]) -> SpooledPayload:
        """Write accepted bytes (`names`: the tensors the full decode found)."""
        folder = self.root / f"window-{window}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uid}.tjxw"
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)  # a reader never sees half a file
        return SpooledPayload(path, names, self.codec)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
