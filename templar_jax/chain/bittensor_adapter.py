"""What `BittensorChain` needs from one Bittensor SDK generation, and the helpers both share.

bittensor 10.x (classic `Subtensor`) and 11.x (the rewritten, async-first SDK) install the same
top-level package but share almost no names, so each gets a thin adapter
(`bittensor_sdk10.Sdk10Adapter`, `bittensor_sdk11.Sdk11Adapter`) that maps one operation to
that SDK's call and its result to plain Python values. The adapters keep no state: the
connection object (`sub`) is owned by `BittensorChain`, which retries and reconnects.
`bittensor_chain.installed_adapter()` picks the adapter of the installed SDK.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Protocol, Sequence

from templar_jax.chain.errors import ChainTransactionError
from templar_jax.chain.protocol import Metagraph

_TRANSIENT_TYPES = (ConnectionError, TimeoutError, OSError, EOFError)
_TRANSIENT_NAME_PARTS = ("connection", "timeout", "websocket", "closed")


class SdkAdapter(Protocol):
    """One SDK generation's calls. `sub` is that SDK's Subtensor (or a fake of it)."""

    generation: int
    subscribes: bool  # wait_for_block follows new heads instead of polling

    def connect(self, network: str) -> Any: ...

    def make_wallet(self, name: str, hotkey: str, path: str | None) -> Any: ...

    def is_transient(self, exc: BaseException) -> bool: ...

    def head(self, sub: Any) -> int: ...

    def timestamp(self, sub: Any, block: int) -> float: ...

    def block_hash(self, sub: Any, block: int) -> str: ...

    def neurons(self, sub: Any, netuid: int, block: int) -> Metagraph: ...

    def uid(self, sub: Any, hotkey: str, netuid: int) -> int | None: ...

    def commit(self, sub: Any, wallet: Any, netuid: int, data: str) -> None: ...

    def commitments(self, sub: Any, netuid: int, block: int) -> dict[str, str]: ...

    def set_weights(self, sub: Any, wallet: Any, netuid: int, uids: Sequence[int],
                    weights: Sequence[float]) -> None: ...

    def weights(self, sub: Any, netuid: int, block: int) -> dict[int, dict[int, float]]: ...

    # Only where `subscribes` is True: the head once it reaches `block`; TimeoutError after
    # `timeout` s; a transient error when the subscription drops (the chain then polls).
    def wait_for_block(self, sub: Any, block: int, timeout: float | None) -> int: ...


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures worth a retry (SDK exceptions are matched by class name,
    since websockets/substrate classes vary between versions)."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    names = [cls.__name__.lower() for cls in type(exc).__mro__]
    return any(part in name for name in names for part in _TRANSIENT_NAME_PARTS)


def check_extrinsic(name: str, result: Any) -> None:
    """Accept an ExtrinsicResponse / ExtrinsicResult (`.success`, `.message`), a
    (success, message) tuple or a bool; raise ChainTransactionError when the chain refused."""
    if result is None:
        return
    if hasattr(result, "success"):
        ok, message = bool(result.success), getattr(result, "message", "")
    elif isinstance(result, tuple) and result:
        ok, message = bool(result[0]), (result[1] if len(result) > 1 else "")
    else:
        ok, message = bool(result), ""
    if not ok:
        raise ChainTransactionError(f"{name} refused by the chain: {str(message)[:200]}")


def to_unix_seconds(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # the chain's Timestamp pallet is UTC
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    seconds = float(value)
    return seconds / 1000.0 if seconds > 1e11 else seconds  # Timestamp.Now is in ms

