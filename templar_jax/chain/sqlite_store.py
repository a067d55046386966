"""One SQLite file shared by many processes: connections, schema, retrying transactions.

Why it is safe across processes on one machine:
- WAL journal (readers never block the writer, the writer never blocks readers);
- every write is one short `BEGIN IMMEDIATE` transaction, so the write lock is taken up
  front and a transaction never has to upgrade a read lock (the classic deadlock);
- `busy_timeout` lets SQLite wait for the lock itself, and on top of that a transaction
  that still gets SQLITE_BUSY/LOCKED is rolled back and rerun with jittered backoff until a
  deadline; the work functions are pure over the connection, so a rerun is harmless.
WAL needs a local file system (not NFS), which is the embedded chain's use case.
"""

from __future__ import annotations

import logging
import os
import pathlib
import random
import sqlite3
import threading
import time
from typing import Callable, TypeVar

from templar_jax.chain.errors import ChainNotInitializedError, ChainUnavailableError

log = logging.getLogger(__name__)

R = TypeVar("R")

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS neurons (
    uid              INTEGER PRIMARY KEY,
    hotkey           TEXT NOT NULL UNIQUE,
    stake            REAL NOT NULL,
    registered_block INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commitments (
    uid   INTEGER PRIMARY KEY,
    data  TEXT NOT NULL,
    block INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS weights (
    validator_uid INTEGER NOT NULL,
    uid           INTEGER NOT NULL,
    weight        REAL NOT NULL,
    block         INTEGER NOT NULL,
    PRIMARY KEY (validator_uid, uid)
);
CREATE TABLE IF NOT EXISTS manual_blocks (
    block     INTEGER PRIMARY KEY,
    timestamp REAL NOT NULL
);
"""

_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED


def is_busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _BUSY_CODES:
        return True
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class SqliteStore:
    """Per-thread (and per-process) connections to one database file plus `transact`."""

    def __init__(self, path: str | os.PathLike, *, busy_timeout_s: float = 5.0,
                 lock_deadline_s: float = 60.0, create: bool = False) -> None:
        self.path = pathlib.Path(path).expanduser().resolve()
        if not create and not self.path.exists():
            raise ChainNotInitializedError(
                f"no chain database at {self.path} (create one with `templar-jax chain init`)"
            )
        self.busy_timeout_s = float(busy_timeout_s)
        self.lock_deadline_s = float(lock_deadline_s)
        self._create = create
        self._local = threading.local()

    def connection(self) -> sqlite3.Connection:
        """This thread's connection; reopened after a fork (a connection must not cross one)."""
        cached = getattr(self._local, "conn", None)
        if cached is not None and self._local.pid == os.getpid():
            return cached
        mode = "rwc" if self._create else "rw"
        conn = sqlite3.connect(
            f"{self.path.as_uri()}?mode={mode}",
            uri=True,
            timeout=self.busy_timeout_s,
            isolation_level=None,  # autocommit; transactions are explicit BEGIN/COMMIT
            check_same_thread=True,
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def init_schema(self) -> None:
        conn = self.connection()
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("SQLite refused WAL mode (got %s); concurrency will be lower", mode)
        self.transact(lambda c: c.executescript(SCHEMA) and None, write=True, script=True)

    def transact(self, work: Callable[[sqlite3.Connection], R], *, write: bool,
                 script: bool = False) -> R:
        """Run `work(conn)` inside one transaction, rerunning it while the file is locked.

        write=True takes the write lock at once (BEGIN IMMEDIATE); reads use a deferred
        transaction so several SELECTs see one consistent snapshot.
        """
        deadline = time.monotonic() + self.lock_deadline_s
        delay = 0.005
        attempt = 0
        while True:
            attempt += 1
            conn = self.connection()
            try:
                if script:
                    # executescript commits first and runs its own statements; DDL here is
                    # idempotent (IF NOT EXISTS), so no outer transaction is needed.
                    return work(conn)
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = work(conn)
                    conn.execute("COMMIT")
                    return result
                except BaseException:
                    _rollback_quietly(conn)
                    raise
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise ChainUnavailableError(
                        f"chain database {self.path.name} stayed locked for "
                        f"{self.lock_deadline_s:.0f} s ({attempt} attempts)"
                    ) from exc
                log.debug("chain db busy (attempt %d), retrying in %.3f s", attempt, delay)
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)


def _rollback_quietly(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:  # the original error is the one worth raising
            pass
