"""What the system needs from a chain (SPEC sec. 4): the `Chain` protocol and its value types.

Neurons only talk to a `Chain`; `LocalChain` (SQLite, embedded) and `BittensorChain`
(Bittensor Subtensor) both implement it, so every loop runs against either one.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Callable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Metagraph:
    """A snapshot of the subnet at `block`.

    Parallel tuples, one entry per registered neuron, sorted by uid. `stake` is in the chain's
    own unit (TAO / alpha on Bittensor, plain numbers locally); `incentive` sums to 1 over uids
    once any validator has set weights (all zero before). `leader_uid` is the uid with the
    highest stake (ties -> lowest uid), None when nobody has stake: the leader validator's
    bucket holds peer lists, checkpoints and aggregator objects (SPEC sec. 3).
    """

    block: int
    uids: tuple[int, ...]
    hotkeys: tuple[str, ...]
    stake: tuple[float, ...]
    incentive: tuple[float, ...]
    leader_uid: int | None

    def __post_init__(self) -> None:
        n = len(self.uids)
        if not (len(self.hotkeys) == len(self.stake) == len(self.incentive) == n):
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
        """Uids with stake > 0, highest stake first (ties by uid)."""
        staked = [(s, u) for u, s in zip(self.uids, self.stake) if s > 0]
        return tuple(u for s, u in sorted(staked, key=lambda su: (-su[0], su[1])))


def leader_of(uids: Sequence[int], stake: Sequence[float]) -> int | None:
    """Highest stake wins, ties go to the lower uid; None when no one has stake."""
    best: int | None = None
    best_stake = 0.0
    for uid, s in sorted(zip(uids, stake)):
        if s > best_stake:
            best, best_stake = uid, s
    return best


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
