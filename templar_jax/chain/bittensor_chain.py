"""BittensorChain: a thin `Chain` adapter over a Bittensor `Subtensor` (bittensor>=10.5,<11).

It only maps calls, retries transient failures (connection drops, timeouts) with exponential
backoff, and reconnects between attempts when it built the Subtensor itself. It never logs
secrets: commitment payloads appear in logs only as a byte count, wallets not at all.

Subtensor methods used (10.x names, all called with keyword arguments):
    get_current_block(), get_timestamp(block=), metagraph(netuid=),
    get_uid_for_hotkey_on_subnet(hotkey_ss58=, netuid=), set_commitment(wallet=, netuid=, data=),
    get_all_commitments(netuid=), set_weights(wallet=, netuid=, uids=, weights=), weights(netuid=)
`bittensor` and `bittensor_wallet` are imported only when the constructor has to build the
Subtensor or the wallet itself (install the `[chain]` extra); tests inject fakes instead.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import time
from typing import Any, Callable, Sequence, TypeVar

from templar_jax.chain import validation
from templar_jax.chain.errors import (
    ChainTimeoutError,
    ChainTransactionError,
    ChainUnavailableError,
    NotRegisteredError,
)
from templar_jax.chain.protocol import Metagraph, leader_of, parse_commitments, window_of

log = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_TYPES = (ConnectionError, TimeoutError, OSError, EOFError)
_TRANSIENT_NAME_PARTS = ("connection", "timeout", "websocket", "closed")
_TIMESTAMP_CACHE = 1024


def is_transient(exc: BaseException) -> bool:
    """Connection-level failures worth a retry (SDK exceptions are matched by class name,
    since websockets/substrate classes vary between versions)."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    names = [cls.__name__.lower() for cls in type(exc).__mro__]
    return any(part in name for name in names for part in _TRANSIENT_NAME_PARTS)


class BittensorChain:
    """`Chain` on a Bittensor subnet `netuid`.

    Pass `subtensor` (and `wallet`) to inject objects; otherwise they are built from
    `network` and `wallet_name`/`wallet_hotkey`. Without a wallet the chain is read-only
    (`commit`, `set_weights` and `my_uid` raise NotRegisteredError).
    """

    def __init__(
        self,
        netuid: int,
        *,
        network: str = "finney",
        wallet_name: str | None = None,
        wallet_hotkey: str = "default",
        wallet_path: str | None = None,
        blocks_per_window: int = 115,
        block_time_s: float = 12.0,
        subtensor: Any = None,
        wallet: Any = None,
        subtensor_factory: Callable[[], Any] | None = None,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self.netuid = int(netuid)
        self.blocks_per_window = int(blocks_per_window)
        self.block_time_s = float(block_time_s)
        self._max_attempts = int(max_attempts)
        self._backoff_s = float(backoff_s)
        self._max_backoff_s = float(max_backoff_s)
        self._sleep = sleep
        if subtensor is None and subtensor_factory is None:
            subtensor_factory = _bittensor_factory(network)
        self._factory = subtensor_factory
        self._subtensor = subtensor  # built on first use, inside the retry loop, if None
        if wallet is None and wallet_name is not None:
            wallet = _make_wallet(wallet_name, wallet_hotkey, wallet_path)
        self._wallet = wallet
        self.hotkey: str | None = (
            None if wallet is None else str(wallet.hotkey.ss58_address)
        )
        self._uid: int | None = None
        self._timestamps: collections.OrderedDict[int, float] = collections.OrderedDict()

    # ---- plumbing -------------------------------------------------------------------------
    def _call(self, method: str, **kwargs: Any) -> Any:
        delay = self._backoff_s
        for attempt in range(1, self._max_attempts + 1):
            try:
                if self._subtensor is None:
                    self._subtensor = self._factory()
                return getattr(self._subtensor, method)(**kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if attempt == self._max_attempts:
                    raise ChainUnavailableError(
                        f"subtensor.{method} failed {attempt} times; last: {type(exc).__name__}"
                    ) from exc
                log.warning("subtensor.%s failed (%s), attempt %d/%d; retrying in %.1f s",
                            method, type(exc).__name__, attempt, self._max_attempts, delay)
                self._sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
                self._reconnect()
        raise AssertionError("unreachable")

    def _reconnect(self) -> None:
        """Drop the connection we built so the next attempt opens a new one (an injected
        Subtensor without a factory is kept: we cannot rebuild it)."""
        if self._factory is None or self._subtensor is None:
            return
        close = getattr(self._subtensor, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # noqa: BLE001 - the old connection is being dropped anyway
                pass
        self._subtensor = None  # the next attempt connects afresh

    def _require_wallet(self) -> Any:
        if self._wallet is None:
            raise NotRegisteredError("BittensorChain has no wallet; it is read-only")
        return self._wallet

    # ---- blocks and time ------------------------------------------------------------------
    def current_block(self) -> int:
        return int(self._call("get_current_block"))

    def block_timestamp(self, block: int) -> float:
        block = int(block)
        if block in self._timestamps:
            return self._timestamps[block]
        ts = _to_unix_seconds(self._call("get_timestamp", block=block))
        self._timestamps[block] = ts  # a past block's time never changes
        while len(self._timestamps) > _TIMESTAMP_CACHE:
            self._timestamps.popitem(last=False)
        return ts

    def window_of(self, block: int) -> int:
        return window_of(block, self.blocks_per_window)

    def current_window(self) -> int:
        return self.window_of(self.current_block())

    def wait_for_block(self, block: int, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        poll_s = min(max(self.block_time_s / 4, 0.25), 3.0)
        while True:
            head = self.current_block()
            if head >= block:
                return head
            if deadline is not None and time.monotonic() >= deadline:
                raise ChainTimeoutError(f"block {block} not reached in {timeout} s (head {head})")
            pause = poll_s
            if deadline is not None:
                pause = max(0.0, min(poll_s, deadline - time.monotonic()))
            self._sleep(pause)

    # ---- neurons --------------------------------------------------------------------------
    def metagraph(self) -> Metagraph:
        mg = self._call("metagraph", netuid=self.netuid)
        uids = tuple(int(u) for u in mg.uids)
        stake = tuple(float(s) for s in mg.S)
        block = getattr(mg, "block", None)
        return Metagraph(
            block=int(block) if block is not None else self.current_block(),
            uids=uids,
            hotkeys=tuple(str(h) for h in mg.hotkeys),
            stake=stake,
            incentive=tuple(float(i) for i in mg.I),
            leader_uid=leader_of(uids, stake),
        )

    def my_uid(self) -> int:
        if self._uid is None:
            self._require_wallet()
            uid = self._call("get_uid_for_hotkey_on_subnet",
                             hotkey_ss58=self.hotkey, netuid=self.netuid)
            if uid is None:
                raise NotRegisteredError(
                    f"hotkey {self.hotkey} is not registered on netuid {self.netuid}"
                )
            self._uid = int(uid)
        return self._uid

    # ---- commitments ----------------------------------------------------------------------
    def commit(self, data: str) -> None:
        validation.validate_commitment(data)
        wallet = self._require_wallet()
        result = self._call("set_commitment", wallet=wallet, netuid=self.netuid, data=data)
        _check_extrinsic("set_commitment", result)
        log.info("committed %d bytes on netuid %d", len(data.encode()), self.netuid)

    def commitments(self) -> dict[int, str]:
        raw = self._call("get_all_commitments", netuid=self.netuid) or {}
        mg = self.metagraph()
        by_hotkey = dict(zip(mg.hotkeys, mg.uids))
        out: dict[int, str] = {}
        for hotkey, data in raw.items():
            uid = by_hotkey.get(hotkey)
            if uid is None or not isinstance(data, str):
                log.debug("ignoring a commitment of a hotkey outside the metagraph")
                continue
            out[uid] = data
        return dict(sorted(out.items()))

    def parsed_commitments(self, parse: Callable[[str], T]) -> dict[int, T]:
        return parse_commitments(self.commitments(), parse)

    # ---- weights --------------------------------------------------------------------------
    def set_weights(self, uids: Sequence[int], weights: Sequence[float]) -> None:
        wallet = self._require_wallet()
        normalized = validation.normalize_weights(uids, weights, self.metagraph().uids)
        ordered = sorted(normalized.items())
        result = self._call(
            "set_weights",
            wallet=wallet,
            netuid=self.netuid,
            uids=[u for u, _ in ordered],
            weights=[w for _, w in ordered],
        )
        _check_extrinsic("set_weights", result)
        log.info("set %d weights on netuid %d", len(ordered), self.netuid)

    def weights(self) -> dict[int, dict[int, float]]:
        out: dict[int, dict[int, float]] = {}
        for validator_uid, row in self._call("weights", netuid=self.netuid) or []:
            total = float(sum(w for _, w in row))
            if total > 0:
                out[int(validator_uid)] = {int(u): float(w) / total for u, w in row if w > 0}
        return out


def _check_extrinsic(name: str, result: Any) -> None:
    """Accept a 10.x ExtrinsicResponse (`.success`, `.message`), a (success, message) tuple
    or a bool; raise ChainTransactionError when the chain refused."""
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


def _to_unix_seconds(value: Any) -> float:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:  # the chain's Timestamp pallet is UTC
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.timestamp()
    seconds = float(value)
    return seconds / 1000.0 if seconds > 1e11 else seconds  # Timestamp.Now is in ms


def _bittensor_factory(network: str) -> Callable[[], Any]:
    try:
        import bittensor  # noqa: PLC0415 - optional dependency, extra [chain]
    except ImportError as exc:
        raise ChainUnavailableError(
            "BittensorChain needs the optional bittensor SDK: pip install 'templar-jax[chain]'"
        ) from exc
    return lambda: bittensor.Subtensor(network=network)


def _make_wallet(name: str, hotkey: str, path: str | None) -> Any:
    try:
        from bittensor_wallet import Wallet  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ChainUnavailableError(
            "BittensorChain needs bittensor-wallet: pip install 'templar-jax[chain]'"
        ) from exc
    kwargs = {"name": name, "hotkey": hotkey}
    if path is not None:
        kwargs["path"] = path
    return Wallet(**kwargs)
