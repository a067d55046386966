"""The chain as every process of a multi-process neuron sees it: process 0 holds the only
connection; its reads are agreed (every process gets process 0's answer), its writes happen
once, on process 0. Implements the `Chain` protocol, so the neuron code is unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence, TypeVar

from templar_jax.chain.protocol import Chain, Metagraph, parse_commitments, window_of
from templar_jax.chain.roles import ValidatorRule
from templar_jax.multihost.agree import SoloAgreement

T = TypeVar("T")


class AgreedChain:
    """`Chain` over process 0's chain (`open_chain` runs there only; see `open`)."""

    def __init__(self, inner: Chain | None, agreement: SoloAgreement, *, hotkey: str | None,
                 blocks_per_window: int):
        self._inner, self._agree = inner, agreement
        self.hotkey, self.blocks_per_window = hotkey, int(blocks_per_window)

    @classmethod
    def open(cls, agreement: SoloAgreement, open_chain: Callable[[], Chain]) -> "AgreedChain":
        """Open the chain on process 0; every process learns its hotkey and window length."""
        opened: list[Chain] = []

        def first():
            opened.append(open_chain())
            return {"hotkey": opened[0].hotkey, "blocks_per_window": opened[0].blocks_per_window}

        info = agreement.value("chain.open", first)
        return cls(opened[0] if opened else None, agreement, **info)

    def _read(self, label: str, fn: Callable[[Chain], Any]):
        return self._agree.value(f"chain.{label}", lambda: fn(self._inner))

    # -- blocks and time ------------------------------------------------------------------
    def current_block(self) -> int:
        return int(self._read("current_block", lambda c: c.current_block()))

    def block_timestamp(self, block: int) -> float:
        return float(self._read("block_timestamp", lambda c: c.block_timestamp(block)))

    def block_hash(self, block: int) -> str:
        return self._read("block_hash", lambda c: c.block_hash(block))

    def window_of(self, block: int) -> int:
        return window_of(block, self.blocks_per_window)

    def current_window(self) -> int:
        return self.window_of(self.current_block())

    def wait_for_block(self, block: int, timeout: float | None = None) -> int:
        return int(self._read("wait_for_block", lambda c: c.wait_for_block(block, timeout)))

    # -- neurons ----------------------------------------------------------------------------
    def metagraph(self) -> Metagraph:
        raw = self._read("metagraph", lambda c: dataclasses.asdict(c.metagraph()))
        rule = ValidatorRule(**raw.pop("rule"))
        return Metagraph(**{k: v if k == "block" else tuple(v) for k, v in raw.items()}, rule=rule)

    def my_uid(self) -> int:
        return int(self._read("my_uid", lambda c: c.my_uid()))

    def register(self, hotkey: str, stake: float | None = None) -> int:
        """LocalChain only (process 0 registers)."""
        return int(self._read("register", lambda c: c.register(hotkey, stake=stake)))

    def commit(self, data: str) -> None:
        self._agree.leader_only("chain.commit", lambda: self._inner.commit(data))

    def commitments(self) -> dict[int, str]:
        raw = self._read("commitments", lambda c: {str(u): s for u, s in c.commitments().items()})
        return {int(u): s for u, s in raw.items()}

    def parsed_commitments(self, parse: Callable[[str], T]) -> dict[int, T]:
        return parse_commitments(self.commitments(), parse)

    def set_weights(self, uids: Sequence[int], weights: Sequence[float]) -> None:
        self._agree.leader_only("chain.set_weights", lambda: self._inner.set_weights(uids, weights))

    def weights(self) -> dict[int, dict[int, float]]:
        raw = self._read("weights", lambda c: {str(v): {str(u): w for u, w in row.items()}
                                                for v, row in c.weights().items()})
        return {int(v): {int(u): float(w) for u, w in row.items()} for v, row in raw.items()}
