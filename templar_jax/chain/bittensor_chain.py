"""BittensorChain: `Chain` on a Bittensor subnet, for bittensor 10.5+ and 11.x alike.

One thin adapter per SDK generation (`bittensor_sdk10`, `bittensor_sdk11`, chosen by the installed
version) maps each operation to that SDK's call; this class holds what both share:
- retries of transient failures (connection drops, timeouts) with exponential backoff, and a
  reconnect between attempts when it built the Subtensor itself;
- block time and blocks per window from the run config (the chain's own 12 s / 0.25 s block
  time is not asked for);
- the metagraph and the commitments read once per block (cached by block number), past blocks'
  timestamps and hashes cached (they never change);
- `wait_for_block` by subscription where the SDK has one (11.x) with a bounded poll as fallback
  (10.x: a sleep until the block is due, then a poll every quarter block, at most every 3 s);
- who is a validator: the run's `ValidatorRule` (stake threshold and permit).
It never logs secrets: commitment payloads appear in logs only as a byte count, wallets not at all.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Any, Callable, Sequence, TypeVar

from templar_jax.chain import validation
from templar_jax.chain.bittensor_adapter import SdkAdapter
from templar_jax.chain.bittensor_sdk10 import Sdk10Adapter
from templar_jax.chain.bittensor_sdk11 import Sdk11Adapter
from templar_jax.chain.errors import (
    BlockNotProducedError,
    ChainTimeoutError,
    ChainUnavailableError,
    NotRegisteredError,
)
from templar_jax.chain.protocol import Metagraph, parse_commitments, window_of
from templar_jax.chain.roles import ValidatorRule

log = logging.getLogger(__name__)

T = TypeVar("T")

_PAST_BLOCK_CACHE = 1024
_MAX_POLL_S = 3.0
_MIN_POLL_S = 0.25


def installed_adapter() -> SdkAdapter:
    """The adapter of the installed SDK (11.x has `bittensor.SyncClient`, 10.x does not)."""
    try:
        import bittensor  # noqa: PLC0415 - optional dependency, extra [chain]
    except ImportError as exc:
        raise ChainUnavailableError(
            "BittensorChain needs the optional bittensor SDK: pip install 'templar-jax[chain]'"
        ) from exc
    if hasattr(bittensor, "SyncClient"):
        return Sdk11Adapter()
    return Sdk10Adapter()


class BittensorChain:
    """`Chain` on a Bittensor subnet `netuid`.

    Pass `subtensor` (and `wallet`) to inject objects, and `adapter` to name the SDK generation
    they belong to; otherwise the installed SDK's adapter builds them from `network` and
    `wallet_name`/`wallet_hotkey`. Without a wallet the chain is read-only (`commit`,
    `set_weights` and `my_uid` raise NotRegisteredError).
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
        rule: ValidatorRule = ValidatorRule(),
        adapter: SdkAdapter | None = None,
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
        self.rule = rule
        self.adapter: SdkAdapter = installed_adapter() if adapter is None else adapter
        self._max_attempts = int(max_attempts)
        self._backoff_s = float(backoff_s)
        self._max_backoff_s = float(max_backoff_s)
        self._sleep = sleep
        if subtensor is None and subtensor_factory is None:
            subtensor_factory = lambda: self.adapter.connect(network)  # noqa: E731
        self._factory = subtensor_factory
        self._subtensor = subtensor  # built on first use, inside the retry loop, if None
        if wallet is None and wallet_name is not None:
            wallet = self.adapter.make_wallet(wallet_name, wallet_hotkey, wallet_path)
        self._wallet = wallet
        self.hotkey: str | None = (
            None if wallet is None else str(wallet.hotkey.ss58_address)
        )
        self._uid: int | None = None
        self._timestamps: collections.OrderedDict[int, float] = collections.OrderedDict()
        self._hashes: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._metagraph: Metagraph | None = None
        self._commitments: tuple[int, dict[int, str]] | None = None

    # ---- plumbing -------------------------------------------------------------------------
    def _call(self, name: str, op: Callable[[Any], T]) -> T:
        """`op(subtensor)`, retried on transient failures (`name` only labels the logs)."""
        delay = self._backoff_s
        for attempt in range(1, self._max_attempts + 1):
            try:
                if self._subtensor is None:
                    self._subtensor = self._factory()
                return op(self._subtensor)
            except Exception as exc:
                if not self.adapter.is_transient(exc):
                    raise
                if attempt == self._max_attempts:
                    raise ChainUnavailableError(
                        f"subtensor {name} failed {attempt} times; last: {type(exc).__name__}"
                    ) from exc
                log.warning("subtensor %s failed (%s), attempt %d/%d; retrying in %.1f s",
                            name, type(exc).__name__, attempt, self._max_attempts, delay)
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
        return self._call("head", self.adapter.head)

    def block_timestamp(self, block: int) -> float:
        """A produced block's time (cached: it never changes); a future block's is estimated
        from the head's time at the run's block time, as LocalChain does."""
        block = int(block)
        if block not in self._timestamps:
            head = self.current_block()
            if block > head:
                return self.block_timestamp(head) + (block - head) * self.block_time_s
        return _cached(self._timestamps, block,
                       lambda: self._call("timestamp", lambda s: self.adapter.timestamp(s, block)))

    def block_hash(self, block: int) -> str:
        """The hash of `block` (a past block's hash never changes, so it is cached)."""
        block = int(block)
        if block not in self._hashes and not 0 <= block <= self.current_block():
            raise BlockNotProducedError(f"block {block} is not produced yet")
        return _cached(self._hashes, block,
                       lambda: self._call("block_hash", lambda s: self.adapter.block_hash(s, block)))

    def window_of(self, block: int) -> int:
        return window_of(block, self.blocks_per_window)

    def current_window(self) -> int:
        return self.window_of(self.current_block())

    def wait_for_block(self, block: int, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.adapter.subscribes:
            try:
                if self._subtensor is None:
                    self._subtensor = self._factory()
                return self.adapter.wait_for_block(self._subtensor, block, timeout)
            except TimeoutError as exc:
                raise ChainTimeoutError(f"block {block} not reached in {timeout} s") from exc
            except Exception as exc:
                if not self.adapter.is_transient(exc):
                    raise
                log.warning("block subscription lost (%s); polling for block %d",
                            type(exc).__name__, block)
                self._reconnect()
        return self._poll_for_block(block, timeout, deadline)

    def _poll_for_block(self, block: int, timeout: float | None, deadline: float | None) -> int:
        """Sleep until `block` is due, then poll every quarter block (0.25 s .. 3 s)."""
        poll_s = min(max(self.block_time_s / 4, _MIN_POLL_S), _MAX_POLL_S)
        while True:
            head = self.current_block()
            if head >= block:
                return head
            if deadline is not None and time.monotonic() >= deadline:
                raise ChainTimeoutError(f"block {block} not reached in {timeout} s (head {head})")
            pause = max(poll_s, (block - head - 1) * self.block_time_s)
            if deadline is not None:
                pause = max(0.0, min(pause, deadline - time.monotonic()))
            self._sleep(pause)

    # ---- neurons --------------------------------------------------------------------------
    def metagraph(self) -> Metagraph:
        """The metagraph at the head block; read from the chain once per block."""
        return self._metagraph_at(self.current_block())

    def _metagraph_at(self, block: int) -> Metagraph:
        cached = self._metagraph
        if cached is not None and cached.block == block:
            return cached
        rows: Metagraph = self._call(
            "metagraph", lambda s: self.adapter.neurons(s, self.netuid, block))
        self._metagraph = dataclasses.replace(rows, block=block, rule=self.rule)
        return self._metagraph

    def my_uid(self) -> int:
        if self._uid is None:
            self._require_wallet()
            uid = self._call("uid", lambda s: self.adapter.uid(s, self.hotkey, self.netuid))
            if uid is None:
                raise NotRegisteredError(
                    f"hotkey {self.hotkey} is not registered on netuid {self.netuid}"
                )
            self._uid = int(uid)
        return self._uid

    # ---- commitments ----------------------------------------------------------------------
    def commit(self, data: str) -> None:
        n_bytes = validation.commitment_bytes(data)
        wallet = self._require_wallet()
        self._call("set_commitment", lambda s: self.adapter.commit(s, wallet, self.netuid, data))
        self._commitments = None  # ours changed: the next read must see it
        log.info("committed %d bytes on netuid %d", n_bytes, self.netuid)

    def commitments(self) -> dict[int, str]:
        """{uid: commitment} at the head block; read once per block. Entries of hotkeys
        outside that block's metagraph, and entries that are not valid commitments (too
        long, not encodable), are dropped."""
        block = self.current_block()
        if self._commitments is not None and self._commitments[0] == block:
            return dict(self._commitments[1])
        raw = self._call("commitments", lambda s: self.adapter.commitments(s, self.netuid, block))
        mg = self._metagraph_at(block)
        by_hotkey = dict(zip(mg.hotkeys, mg.uids))
        out: dict[int, str] = {}
        for hotkey, data in raw.items():
            uid = by_hotkey.get(hotkey)
            if uid is None or not validation.is_valid_commitment(data):
                log.debug("ignoring a commitment outside the metagraph or not valid")
                continue
            out[uid] = data
        self._commitments = (block, dict(sorted(out.items())))
        return dict(self._commitments[1])

    def parsed_commitments(self, parse: Callable[[str], T]) -> dict[int, T]:
        return parse_commitments(self.commitments(), parse)

    # ---- weights --------------------------------------------------------------------------
    def set_weights(self, uids: Sequence[int], weights: Sequence[float]) -> None:
        wallet = self._require_wallet()
        normalized = validation.normalize_weights(uids, weights, self.metagraph().uids)
        ordered = sorted(normalized.items())
        self._call("set_weights", lambda s: self.adapter.set_weights(
            s, wallet, self.netuid, [u for u, _ in ordered], [w for _, w in ordered]))
        log.info("set %d weights on netuid %d", len(ordered), self.netuid)

    def weights(self) -> dict[int, dict[int, float]]:
        block = self.current_block()
        rows = self._call("weights", lambda s: self.adapter.weights(s, self.netuid, block))
        out: dict[int, dict[int, float]] = {}
        for validator_uid, row in rows.items():
            total = float(sum(row.values()))
            if total > 0:
                out[validator_uid] = {u: w / total for u, w in row.items() if w > 0}
        return out


def _cached(cache: collections.OrderedDict, block: int, read: Callable[[], T]) -> T:
    """A past block's value from `cache`, else `read()` it and keep the last 1024."""
    if block in cache:
        return cache[block]
    value = read()
    cache[block] = value
    while len(cache) > _PAST_BLOCK_CACHE:
        cache.popitem(last=False)
    return value
