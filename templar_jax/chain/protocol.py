"""What the system needs from a chain (SPEC sec. 4): the `Chain` protocol and its value types.

Neurons only talk to a `Chain`; `LocalChain` (SQLite, embedded) and `BittensorChain`
(Bittensor Subtensor) both implement it, so every loop runs against either one.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

from templar_jax.chain.roles import ValidatorRule

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Metagraph:
    """A snapshot of the subnet at `block`.

    Parallel tuples, one entry per registered neuron, sorted by uid. `stake` is in the chain's
    own unit (TAO / alpha on Bittensor, plain numbers locally); `incentive` sums to 1 over uids
    once any validator has set weights (all zero before); `validator_permit` is the chain's
    permit. `rule` (the run's `chain.validator_*` keys) says which uids are validators; every
    other uid is a miner. The leader validator (highest stake, ties -> lowest uid) holds peer
    lists, checkpoints and aggregator objects in its bucket (SPEC sec. 3).
    """

    block: int
    uids: tuple[int, ...]
    hotkeys: tuple[str, ...]
    stake: tuple[float, ...]
    incentive: tuple[float, ...]
    validator_permit: tuple[bool, ...]
    rule: ValidatorRule = ValidatorRule()

    def __post_init__(self) -> None:
        n = len(self.uids)
        columns = (self.hotkeys, self.stake, self.incentive, self.validator_permit)
        if any(len(column) != n for column in columns):
            raise ValueError("metagraph columns must have one entry per uid")

    @property
    def n(self) -> int:
        return len(self.uids)

    def uid_of(self, hotkey: str) -> int | None:
        """The uid registered to `hotkey`, or None."""
        for uid, hk in zip(self.uids, self.hotkeys):
            if hk == hotkey:
                return uid
        return None

    def hotkey_of(self, uid: int) -> str:
        return self.hotkeys[self.uids.index(uid)]

    def stake_of(self, uid: int) -> float:
        return self.stake[self.uids.index(uid)]

    def incentive_of(self, uid: int) -> float:
        return self.incentive[self.uids.index(uid)]

    @property
    def validator_uids(self) -> tuple[int, ...]:
        """Uids that `rule` makes validators, highest stake first (ties by uid)."""
        return self.rule.validators(self.uids, self.stake, self.validator_permit)

    @property
    def leader_uid(self) -> int | None:
        """The highest-stake validator; None when there is no validator."""
        validators = self.validator_uids
        return validators[0] if validators else None


def window_of(block: int, blocks_per_window: int) -> int:
    """SPEC sec. 1: `window = block // blocks_per_window`."""
    if blocks_per_window <= 0:
        raise ValueError(f"blocks_per_window must be positive, got {blocks_per_window}")
    return int(block) // int(blocks_per_window)


def parse_commitments(
    commitments: Mapping[int, str], parse: Callable[[str], T]
) -> dict[int, T]:
    """Apply `parse` to each raw commitment; skip (and log) the ones it rejects.

    A peer's commitment is untrusted input: a parser raising any `Exception` only drops that
    uid. The log names the uid, the exception type and the length, never the content (it
    may hold a read secret).
    """
    parsed: dict[int, T] = {}
    for uid in sorted(commitments):
        raw = commitments[uid]
        try:
            parsed[uid] = parse(raw)
        except Exception as exc:  # noqa: BLE001 - any rejection by the parser skips the peer
            log.warning(
                "skipping commitment of uid %d (%d chars): %s", uid, len(raw), type(exc).__name__
            )
    return parsed


@runtime_checkable
class Chain(Protocol):
    """The chain bridge every neuron codes against (SPEC sec. 4).

    `hotkey` is the identity this client acts as; `blocks_per_window` fixes the window
    arithmetic. Timestamps are Unix seconds (float). Weights are read back normalized
    (each validator's row sums to 1).
    """

    hotkey: str | None
    blocks_per_window: int

    def current_block(self) -> int: ...

    def block_timestamp(self, block: int) -> float: ...

    def block_hash(self, block: int) -> str:
        """Hex hash of a block already produced (BlockNotProducedError for a future block): the
        validator's evaluation randomness (gauntlet/eval_seed.py), unknowable before the block."""
        ...

    def window_of(self, block: int) -> int: ...

    def current_window(self) -> int: ...

    def metagraph(self) -> Metagraph: ...

    def my_uid(self) -> int: ...

    def commit(self, data: str) -> None: ...

    def commitments(self) -> dict[int, str]: ...

    def parsed_commitments(self, parse: Callable[[str], T]) -> dict[int, T]: ...

    def set_weights(self, uids: Sequence[int], weights: Sequence[float]) -> None: ...

    def weights(self) -> dict[int, dict[int, float]]: ...

    def wait_for_block(self, block: int, timeout: float | None = None) -> int: ...
