"""Decisions made once on process 0 and handed to every process of a neuron.

Every process calls `value(label, fn)` / `blob(label, fn)` in the same order (the neuron's code
is the same on all of them and every input it branches on is agreed), so the n-th call on each
process names the same decision. Process 0 runs `fn` and publishes the result (or the exception
it raised) in jax.distributed's key-value store under the call's sequence number; the others
wait for it. Inside `fn` (process 0 only) further agreements are plain calls, so a wrapper may
agree on a whole operation whose parts are agreed wrappers themselves.

The one rule for callers: an agreed `fn` must not change, on process 0 alone, state that
decides later agreements (a cache filled inside it would make process 0 skip a read the others
still make: the sequences drift apart). Agree on reads one by one where a loop has such state.

Results travel as JSON (`value`) or bytes (`blob`, split into parts); an exception is re-raised
on every process as the same class where that class takes one message, else as MultihostError.
Each record carries its label: a process whose n-th call names another decision than process 0's
(their code paths diverged, e.g. an error caught on one process only) fails with MultihostError
naming both, instead of taking another decision's value.
Process 0 deletes a decision `keep` calls later: a process that far behind is broken anyway
(its wait then fails with a clear error instead of reading a stale value).

The one step that goes the other way, `gather_from_all(label, local)`: each process's own small
value (what it could not read itself) collected on process 0 and handed to all as one decision.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from typing import Any, Callable, TypeVar

from templar_jax.multihost.errors import MultihostError

T = TypeVar("T")
log = logging.getLogger(__name__)

PART_BYTES = 4 << 20  # key-value messages stay well below gRPC's default limit
PREFIX = "templar/agree"


class SoloAgreement:
    """One process: every decision is simply made here."""

    leader = True
    multiprocess = False
    process_index = 0
    phase = "start"

    def value(self, label: str, fn: Callable[[], T]) -> T:
        self.phase = label
        return fn()

    blob = value

    def leader_only(self, label: str, fn: Callable[[], Any]) -> None:
        self.phase = label
        fn()

    def now(self) -> float:
        return time.time()

    def gather_from_all(self, label: str, local: Any, *, wait_s: float) -> list:
        self.phase = label
        return [local]


def solo() -> SoloAgreement:
    return SoloAgreement()


class Agreement(SoloAgreement):
    """Process 0 decides, the others receive (see the module docstring)."""

    multiprocess = True

    def __init__(self, client, process_index: int, process_count: int, *, wait_s: float = 7 * 86400.0,
                 keep: int = 4096):
        self.client, self.process_index, self.process_count = client, int(process_index), int(process_count)
        self.leader = self.process_index == 0
        self.wait_ms = int(wait_s * 1000)
        self.keep = keep
        self.seq = 0
        self.phase = "start"
        self._inside = threading.local()
        self._parts: dict[int, int] = {}

    # -- the public decisions ------------------------------------------------------------
    def value(self, label: str, fn: Callable[[], T]) -> T:
        """fn()'s JSON-able result, computed on process 0 (as JSON reads it back: lists, not tuples)."""
        return json.loads(self._share(label, lambda: json.dumps(fn()).encode()))

    def blob(self, label: str, fn: Callable[[], bytes]) -> bytes:
        """fn()'s bytes, computed on process 0."""
        return self._share(label, fn)

    def leader_only(self, label: str, fn: Callable[[], Any]) -> None:
        """Run fn on process 0 (a write); the others wait for it and see its exception, if any."""
        self.value(label, lambda: (fn(), None)[1])

    def now(self) -> float:
        """Process 0's wall clock: a deadline judged by it is judged alike everywhere."""
        return float(self.value("clock", time.time))

    def gather_from_all(self, label: str, local: Any, *, wait_s: float) -> list:
        """Every process's JSON-able `local`, indexed by process, on every process. Each process
        but 0 sets its own key; process 0 waits for all of them (`wait_s` in all) and publishes
        the list as the decision `label`. A process silent that long makes every process raise
        MultihostError naming it."""
        if getattr(self._inside, "depth", 0):
            raise MultihostError(f"gather_from_all {label!r} inside another decision (process 0 alone runs it)")
        seq = self.seq  # the number the decision below takes on every process
        if not self.leader:
            self.client.key_value_set_bytes(f"{PREFIX}/{seq}/from/{self.process_index}",
                                            _record(b"V", label, json.dumps(local).encode()))
        deadline = time.monotonic() + wait_s
        return self.value(label, lambda: [local] + [self._report(seq, i, label, deadline)
                                                    for i in range(1, self.process_count)])

    # -- mechanics -------------------------------------------------------------------------
    def _share(self, label: str, fn: Callable[[], bytes]) -> bytes:
        if getattr(self._inside, "depth", 0):  # process 0, within another decision: just do it
            return fn()
        self.phase = label
        seq, self.seq = self.seq, self.seq + 1
        key = f"{PREFIX}/{seq}"
        log.debug("decision %d: %s", seq, label)
        if not self.leader:
            return self._receive(key, label)
        self._inside.depth = 1
        error = None
        try:
            kind, body = b"V", fn()
        except Exception as err:  # every process must see it; it propagates here too
            error = err
            kind, body = b"E", json.dumps({"module": type(err).__module__, "name": type(err).__qualname__,
                                           "message": str(err)}).encode()
        finally:
            self._inside.depth = 0
        self._publish(seq, key, _record(kind, label, body))
        if error is not None:
            raise error
        return body

    def _publish(self, seq: int, key: str, record: bytes) -> None:
        parts = [record[i:i + PART_BYTES] for i in range(0, len(record), PART_BYTES)] or [b""]
        for i, part in enumerate(parts):
            self.client.key_value_set_bytes(f"{key}/{i}", part)
        self.client.key_value_set(key, str(len(parts)))  # written last: the parts are complete
        self._parts[seq] = len(parts)
        old = seq - self.keep
        if old in self._parts:
            for i in range(self._parts.pop(old)):
                self.client.key_value_delete(f"{PREFIX}/{old}/{i}")
            self.client.key_value_delete(f"{PREFIX}/{old}")

    def _receive(self, key: str, label: str) -> bytes:
        try:
            n = int(self.client.blocking_key_value_get(key, self.wait_ms))
            record = b"".join(self.client.blocking_key_value_get_bytes(f"{key}/{i}", self.wait_ms)
                              for i in range(n))
        except Exception as err:
            raise MultihostError(f"process {self.process_index}, phase {label!r}: no decision from "
                                 f"process 0 ({type(err).__name__}: {err})") from None
        kind, made, body = _parse(record)
        if made != label:
            raise MultihostError(f"process {self.process_index}, decision {key.rsplit('/', 1)[1]}: process 0 "
                                 f"made {made!r} where this process expected {label!r} (the processes' "
                                 f"code paths diverged)")
        if kind == b"V":
            return body
        raise _rebuilt(json.loads(body))

    def _report(self, seq: int, process: int, label: str, deadline: float) -> Any:
        key = f"{PREFIX}/{seq}/from/{process}"
        wait_ms = max(1, int((deadline - time.monotonic()) * 1000))
        try:
            record = self.client.blocking_key_value_get_bytes(key, wait_ms)
        except Exception as err:
            raise MultihostError(f"process 0, phase {label!r}: no report from process {process} in time "
                                 f"({type(err).__name__}: {err})") from None
        self.client.key_value_delete(key)
        _, made, body = _parse(record)
        if made != label:
            raise MultihostError(f"process 0, decision {seq}: process {process} reported for {made!r} where "
                                 f"process 0 expected {label!r} (the processes' code paths diverged)")
        return json.loads(body)


def _record(kind: bytes, label: str, body: bytes) -> bytes:
    """kind (V: value, E: error), 4-byte little-endian label length, label, body."""
    name = label.encode()
    return kind + len(name).to_bytes(4, "little") + name + body


def _parse(record: bytes) -> tuple[bytes, str, bytes]:
    n = int.from_bytes(record[1:5], "little")
    return record[:1], record[5:5 + n].decode(), record[5 + n:]


def _rebuilt(info: dict) -> Exception:
    """Process 0's exception as the same class here (it takes one message), else MultihostError."""
    message = info.get("message", "")
    try:
        cls = getattr(importlib.import_module(info["module"]), info["name"])
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(message)
    except Exception:  # unknown class or a constructor that wants more: say what it was
        pass
    return MultihostError(f"process 0 raised {info.get('name')}: {message}")
