"""LocalChain: the embedded default chain, one SQLite file shared by every local process.

Blocks come from one of two clocks, fixed at init and stored in the `meta` table so every
process agrees:
- "clock": `block = floor((now - genesis_time) / block_time)` and
  `timestamp(block) = genesis_time + block * block_time` (1 s for demos, 12 s like Bittensor);
- "manual": the head block lives in the database and only moves with `advance(n)`; each
  advance records the wall time at which the new head appeared, so storage time checks
  (SPEC sec. 1) still compare against real timestamps. Skipped blocks share the time of
  the advance that produced them; blocks not produced yet are estimated at block_time apart.

Incentive is computed on read from the latest weights with `consensus.yuma_incentive`.

Block hashes are blake2b-256 over a random per-chain salt (created with the chain, kept in `meta`)
and the block number, available once the block is produced: unknowable before, the same for every
process, like a real chain's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import sqlite3
import time
from typing import Any, Callable, Mapping, Sequence, TypeVar

from templar_jax.chain import validation
from templar_jax.chain.consensus import yuma_incentive
from templar_jax.chain.errors import (
    BlockNotProducedError,
    ChainAlreadyInitializedError,
    ChainConfigError,
    ChainNotInitializedError,
    ChainTimeoutError,
    ManualModeError,
    NotRegisteredError,
    RegistrationFullError,
)
from templar_jax.chain.protocol import Metagraph, parse_commitments, window_of
from templar_jax.chain.roles import ValidatorRule, permits_by_stake
from templar_jax.chain.sqlite_store import SCHEMA_VERSION, SqliteStore

log = logging.getLogger(__name__)

T = TypeVar("T")

MODES = ("clock", "manual")
_SETTING_PREFIX = "setting:"
_SALT_KEY = "block_hash_salt"


class LocalChain:
    """`Chain` over a SQLite file. Open one per process (and per hotkey) with `LocalChain(path,
    hotkey=...)`; create the file once with `LocalChain.create(...)` or `templar-jax chain init`.
    """

    def __init__(self, path: str | os.PathLike, hotkey: str | None = None, *,
                 clock: Callable[[], float] = time.time, busy_timeout_s: float = 5.0,
                 lock_deadline_s: float = 60.0, rule: ValidatorRule = ValidatorRule()) -> None:
        self._store = SqliteStore(path, busy_timeout_s=busy_timeout_s,
                                  lock_deadline_s=lock_deadline_s)
        self.path = self._store.path
        self.hotkey = hotkey
        self.rule = rule  # who is a validator; staked neurons hold permits as on Bittensor
        self._clock = clock
        try:
            meta = self._store.transact(_read_meta, write=False) if _has_meta(self._store) else {}
        except sqlite3.DatabaseError as exc:
            raise ChainNotInitializedError(f"{self.path} is not a chain database: {exc}") from exc
        if "blocks_per_window" not in meta:
            raise ChainNotInitializedError(f"{self.path} holds no chain settings; run chain init")
        self.genesis_time = float(meta["genesis_time"])
        self.block_time = float(meta["block_time"])
        self.blocks_per_window = int(meta["blocks_per_window"])
        self.mode = meta["mode"]
        self.max_uids = int(meta["max_uids"])
        self._salt: str | None = meta.get(_SALT_KEY)  # None on a chain created before salts: made on first use
        self.settings: dict[str, Any] = {
            k[len(_SETTING_PREFIX):]: json.loads(v)
            for k, v in meta.items() if k.startswith(_SETTING_PREFIX)
        }

    # ---- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, *, block_time: float = 12.0,
               blocks_per_window: int = 115, mode: str = "clock",
               genesis_time: float | None = None, max_uids: int = 256,
               settings: Mapping[str, Any] | None = None, hotkey: str | None = None,
               clock: Callable[[], float] = time.time) -> "LocalChain":
        """Create the database file and its settings; refuses if a chain already exists there."""
        if not (math.isfinite(block_time) and block_time > 0):
            raise ChainConfigError(f"block_time must be a positive number of seconds: {block_time}")
        if int(blocks_per_window) != blocks_per_window or blocks_per_window <= 0:
            raise ChainConfigError(
                f"blocks_per_window must be a positive integer, got {blocks_per_window}"
            )
        if mode not in MODES:
            raise ChainConfigError(f"mode must be one of {MODES}, got {mode!r}")
        if int(max_uids) != max_uids or max_uids <= 0:
            raise ChainConfigError(f"max_uids must be a positive integer, got {max_uids}")
        genesis = float(clock() if genesis_time is None else genesis_time)
        try:
            meta = {
                "schema_version": str(SCHEMA_VERSION),
                "genesis_time": repr(genesis),
                "block_time": repr(float(block_time)),
                "blocks_per_window": str(int(blocks_per_window)),
                "mode": mode,
                "max_uids": str(int(max_uids)),
                _SALT_KEY: secrets.token_hex(32),
            }
            for key, value in (settings or {}).items():
                meta[_SETTING_PREFIX + str(key)] = json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ChainConfigError(f"run settings must be JSON values: {exc}") from exc

        store = SqliteStore(path, create=True)
        store.init_schema()

        def write(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM meta WHERE key='blocks_per_window'").fetchone():
                raise ChainAlreadyInitializedError(f"a chain already exists at {store.path}")
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            conn.execute("INSERT INTO manual_blocks(block, timestamp) VALUES (0, ?)", (genesis,))

        try:
            store.transact(write, write=True)
        finally:
            store.close()
        log.info("created %s chain at %s (block_time %.3g s, %d blocks/window)",
                 mode, store.path, block_time, blocks_per_window)
        return cls(path, hotkey=hotkey, clock=clock)

    def with_hotkey(self, hotkey: str | None) -> "LocalChain":
        """The same chain, acting as another hotkey."""
        return LocalChain(self.path, hotkey=hotkey, clock=self._clock,
                          busy_timeout_s=self._store.busy_timeout_s,
                          lock_deadline_s=self._store.lock_deadline_s, rule=self.rule)

    def close(self) -> None:
        self._store.close()

    # ---- blocks and time ------------------------------------------------------------------
    def current_block(self) -> int:
        if self.mode == "clock":
            return max(0, math.floor((self._clock() - self.genesis_time) / self.block_time))
        return self._store.transact(_manual_head, write=False)[0]

    def block_timestamp(self, block: int) -> float:
        block = int(block)
        if block < 0:
            raise ValueError(f"block must be >= 0, got {block}")
        if self.mode == "clock":
            return self.genesis_time + block * self.block_time

        def read(conn: sqlite3.Connection) -> float:
            row = conn.execute(
                "SELECT timestamp FROM manual_blocks WHERE block >= ? ORDER BY block LIMIT 1",
                (block,),
            ).fetchone()
            if row is not None:
                return float(row[0])
            head, head_ts = _manual_head(conn)
            return head_ts + (block - head) * self.block_time

        return self._store.transact(read, write=False)

    def block_hash(self, block: int) -> str:
        block = int(block)
        head = self.current_block()
        if not 0 <= block <= head:
            raise BlockNotProducedError(f"block {block} is not produced yet (head {head})")
        if self._salt is None:
            self._salt = self._store.transact(_block_salt, write=True)
        digest = hashlib.blake2b(f"{self._salt}/{block}".encode(), digest_size=32).hexdigest()
        return "0x" + digest

    def window_of(self, block: int) -> int:
        return window_of(block, self.blocks_per_window)

    def current_window(self) -> int:
        return self.window_of(self.current_block())

    def advance(self, n: int = 1) -> int:
        """Manual mode only: move the head `n` blocks forward (all processes see it). Returns it."""
        if self.mode != "manual":
            raise ManualModeError("this chain follows the wall clock; advance needs mode='manual'")
        if int(n) != n or n < 1:
            raise ValueError(f"advance needs a positive integer, got {n}")

        def write(conn: sqlite3.Connection) -> int:
            head, head_ts = _manual_head(conn)
            new_head = head + int(n)
            conn.execute("INSERT INTO manual_blocks(block, timestamp) VALUES (?, ?)",
                         (new_head, max(self._clock(), head_ts)))
            return new_head

        return self._store.transact(write, write=True)

    def wait_for_block(self, block: int, timeout: float | None = None) -> int:
        """Block until the head is >= `block`; returns the head. ChainTimeoutError on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            head = self.current_block()
            if head >= block:
                return head
            if self.mode == "clock":
                pause = self.genesis_time + block * self.block_time - self._clock() + 1e-3
                pause = min(max(pause, 1e-3), 1.0)
            else:
                pause = 0.02
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChainTimeoutError(
                        f"block {block} not reached in {timeout} s (head {head})"
                    )
                pause = min(pause, left)
            time.sleep(pause)

    # ---- neurons --------------------------------------------------------------------------
    def register(self, hotkey: str, stake: float | None = None) -> int:
        """Give `hotkey` a uid (the next free one). Re-registering returns the same uid and,
        when `stake` is given, sets its stake."""
        validation.validate_hotkey(hotkey)
        new_stake = None if stake is None else validation.validate_stake(stake)
        block = self.current_block()

        def write(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT uid FROM neurons WHERE hotkey=?", (hotkey,)).fetchone()
            if row is not None:
                if new_stake is not None:
                    conn.execute("UPDATE neurons SET stake=? WHERE uid=?", (new_stake, row[0]))
                return int(row[0])
            uid = conn.execute("SELECT COALESCE(MAX(uid) + 1, 0) FROM neurons").fetchone()[0]
            if uid >= self.max_uids:
                raise RegistrationFullError(f"all {self.max_uids} uids are taken")
            conn.execute(
                "INSERT INTO neurons(uid, hotkey, stake, registered_block) VALUES (?, ?, ?, ?)",
                (uid, hotkey, new_stake or 0.0, block),
            )
            return int(uid)

        uid = self._store.transact(write, write=True)
        log.info("hotkey %s has uid %d", hotkey, uid)
        return uid

    def my_uid(self) -> int:
        if self.hotkey is None:
            raise NotRegisteredError("this LocalChain was opened without a hotkey")
        row = self._store.transact(
            lambda c: c.execute(
                "SELECT uid FROM neurons WHERE hotkey=?", (self.hotkey,)
            ).fetchone(),
            write=False,
        )
        if row is None:
            raise NotRegisteredError(f"hotkey {self.hotkey!r} is not registered")
        return int(row[0])

    def metagraph(self) -> Metagraph:
        block = self.current_block()

        def read(conn: sqlite3.Connection):
            neurons = conn.execute("SELECT uid, hotkey, stake FROM neurons ORDER BY uid").fetchall()
            weights = conn.execute("SELECT validator_uid, uid, weight FROM weights").fetchall()
            return neurons, weights

        neurons, weight_rows = self._store.transact(read, write=False)
        uids = tuple(int(r[0]) for r in neurons)
        stake = tuple(float(r[2]) for r in neurons)
        incentive = yuma_incentive(uids, dict(zip(uids, stake)), _rows_by_validator(weight_rows))
        return Metagraph(
            block=block,
            uids=uids,
            hotkeys=tuple(str(r[1]) for r in neurons),
            stake=stake,
            incentive=tuple(incentive[u] for u in uids),
            validator_permit=permits_by_stake(uids, stake),
            rule=self.rule,
        )

    # ---- commitments ----------------------------------------------------------------------
    def commit(self, data: str) -> None:
        validation.validate_commitment(data)
        uid, block = self.my_uid(), self.current_block()
        self._store.transact(
            lambda c: c.execute(
                "INSERT INTO commitments(uid, data, block) VALUES (?, ?, ?) "
                "ON CONFLICT(uid) DO UPDATE SET data=excluded.data, block=excluded.block",
                (uid, data, block),
            ),
            write=True,
        )
        log.info("uid %d committed %d bytes at block %d", uid, len(data.encode()), block)

    def commitments(self) -> dict[int, str]:
        return {uid: data for uid, (data, _) in self.commitments_with_blocks().items()}

    def commitments_with_blocks(self) -> dict[int, tuple[str, int]]:
        rows = self._store.transact(
            lambda c: c.execute("SELECT uid, data, block FROM commitments ORDER BY uid").fetchall(),
            write=False,
        )
        return {int(uid): (str(data), int(block)) for uid, data, block in rows}

    def parsed_commitments(self, parse: Callable[[str], T]) -> dict[int, T]:
        return parse_commitments(self.commitments(), parse)

    # ---- weights --------------------------------------------------------------------------
    def set_weights(self, uids: Sequence[int], weights: Sequence[float]) -> None:
        uid = self.my_uid()
        block = self.current_block()

        def write(conn: sqlite3.Connection) -> int:
            known = [r[0] for r in conn.execute("SELECT uid FROM neurons")]
            normalized = validation.normalize_weights(uids, weights, known)
            conn.execute("DELETE FROM weights WHERE validator_uid=?", (uid,))
            conn.executemany(
                "INSERT INTO weights(validator_uid, uid, weight, block) VALUES (?, ?, ?, ?)",
                [(uid, j, w, block) for j, w in normalized.items()],
            )
            return len(normalized)

        n = self._store.transact(write, write=True)
        log.info("uid %d set %d weights at block %d", uid, n, block)

    def weights(self) -> dict[int, dict[int, float]]:
        rows = self._store.transact(
            lambda c: c.execute("SELECT validator_uid, uid, weight FROM weights").fetchall(),
            write=False,
        )
        return _rows_by_validator(rows)

    def weights_blocks(self) -> dict[int, int]:
        """Block at which each validator last set weights."""
        rows = self._store.transact(
            lambda c: c.execute(
                "SELECT validator_uid, MAX(block) FROM weights GROUP BY validator_uid"
            ).fetchall(),
            write=False,
        )
        return {int(v): int(b) for v, b in rows}


def _has_meta(store: SqliteStore) -> bool:
    row = store.transact(
        lambda c: c.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone(),
        write=False,
    )
    return row is not None


def _read_meta(conn: sqlite3.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}


def _block_salt(conn: sqlite3.Connection) -> str:
    """The chain's block-hash salt; a chain created before salts existed gets one now (once)."""
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (_SALT_KEY, secrets.token_hex(32)))
    return str(conn.execute("SELECT value FROM meta WHERE key=?", (_SALT_KEY,)).fetchone()[0])


def _manual_head(conn: sqlite3.Connection) -> tuple[int, float]:
    row = conn.execute(
        "SELECT block, timestamp FROM manual_blocks ORDER BY block DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise ChainNotInitializedError("manual chain has no genesis block")
    return int(row[0]), float(row[1])


def _rows_by_validator(rows) -> dict[int, dict[int, float]]:
    out: dict[int, dict[int, float]] = {}
    for v, j, w in rows:
        out.setdefault(int(v), {})[int(j)] = float(w)
    return out
