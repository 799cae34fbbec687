"""The SQLite schedule store: beat state in a file, by default the embedded broker's.

Tables ``celeriac_beat_lease`` (one row per namespace: holder and expiry, epoch seconds)
and ``celeriac_beat_state`` (last run per entry) live next to the transport's tables.
Like the transport, each instance owns one connection used only from its own single
worker thread, the file is in WAL mode, and every write is one ``BEGIN IMMEDIATE``
transaction: taking the lease and claiming a tick (lease check + compare-and-set) are
atomic across processes. Lease times come from the local wall clock, which all
processes sharing a file on one host have in common.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from celeriac.engines.sqlite.broker import sqlite_path
from celeriac.engines.sqlite.connection import enable_wal, write_transaction
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["SQLiteStore"]

T = TypeVar("T")

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS celeriac_beat_lease (
        namespace TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS celeriac_beat_state (
        namespace TEXT NOT NULL,
        entry TEXT NOT NULL,
        last_run REAL NOT NULL,
        claimed_by TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (namespace, entry)) WITHOUT ROWID""",
)
# Take the lease when there is none, when it expired, or extend our own; one statement.
_ACQUIRE = (
    "INSERT INTO celeriac_beat_lease (namespace, holder, expires_at) VALUES (?, ?, ?)"
    " ON CONFLICT (namespace) DO UPDATE SET holder = excluded.holder,"
    " expires_at = excluded.expires_at"
    " WHERE celeriac_beat_lease.holder = excluded.holder OR celeriac_beat_lease.expires_at <= ?"
)
_HOLDS = "SELECT 1 FROM celeriac_beat_lease WHERE namespace = ? AND holder = ? AND expires_at > ?"


class _Database:
    """The blocking half: one connection, only ever used from the store's own thread."""

    def __init__(self, path: Path, namespace: str, busy_timeout: float) -> None:
        self.path = path
        self.namespace = namespace
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection."""
        if self._conn is None:
            raise RuntimeError("SQLite schedule store is closed")
        return self._conn

    def open(self) -> None:
        """Connect, switch to WAL and create the tables (idempotent)."""
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise ImproperlyConfigured(f"cannot open beat store {self.path}: {exc}") from exc
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        enable_wal(conn, self.busy_timeout)
        conn.execute("PRAGMA synchronous = NORMAL")
        self._conn = conn
        with self._write():
            for statement in _SCHEMA:
                conn.execute(statement)

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self.conn)

    def acquire(self, holder: str, ttl: float, now: float) -> bool:
        """Take or extend the lease; True if ``holder`` has it now."""
        with self._write() as conn:
            cursor = conn.execute(_ACQUIRE, (self.namespace, holder, now + ttl, now))
            return cursor.rowcount == 1

    def release(self, holder: str) -> None:
        """Delete the lease row if ``holder`` has it."""
        with self._write() as conn:
            conn.execute(
                "DELETE FROM celeriac_beat_lease WHERE namespace = ? AND holder = ?",
                (self.namespace, holder),
            )

    def holder(self, now: float) -> str | None:
        """The holder of the unexpired lease."""
        row = self.conn.execute(
            "SELECT holder FROM celeriac_beat_lease WHERE namespace = ? AND expires_at > ?",
            (self.namespace, now),
        ).fetchone()
        return None if row is None else str(row[0])

    def load(self) -> dict[str, float]:
        """Every entry's last run."""
        rows = self.conn.execute(
            "SELECT entry, last_run FROM celeriac_beat_state WHERE namespace = ?",
            (self.namespace,),
        )
        return {str(entry): float(last_run) for entry, last_run in rows}

    def claim(
        self, holder: str, entry: str, expected: float | None, new: float, now: float
    ) -> bool:
        """Lease check and compare-and-set of the last run, in one transaction."""
        with self._write() as conn:
            if conn.execute(_HOLDS, (self.namespace, holder, now)).fetchone() is None:
                return False
            if expected is None:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO celeriac_beat_state VALUES (?, ?, ?, ?, ?)",
                    (self.namespace, entry, new, holder, now),
                )
            else:
                cursor = conn.execute(
                    "UPDATE celeriac_beat_state SET last_run = ?, claimed_by = ?, updated_at = ?"
                    " WHERE namespace = ? AND entry = ? AND last_run = ?",
                    (new, holder, now, self.namespace, entry, expected),
                )
            return cursor.rowcount == 1

    def revert(
        self, holder: str, entry: str, claimed: float, previous: float | None, now: float
    ) -> bool:
        """Put ``previous`` back (delete the row when None) if ``holder``'s claim is current."""
        mine = " WHERE namespace = ? AND entry = ? AND last_run = ? AND claimed_by = ?"
        key = (self.namespace, entry, claimed, holder)
        with self._write() as conn:
            if previous is None:
                cursor = conn.execute("DELETE FROM celeriac_beat_state" + mine, key)
            else:
                cursor = conn.execute(
                    "UPDATE celeriac_beat_state SET last_run = ?, claimed_by = '', updated_at = ?"
                    + mine,
                    (previous, now, *key),
                )
            return cursor.rowcount == 1


class SQLiteStore:
    """A :class:`~celeriac.beat.stores.ScheduleStore` in an SQLite file.

    URLs as for the transport (``sqlite:///rel.db``, ``sqlite:////abs.db``, bare
    ``sqlite://`` is ``./celeriac.sqlite``). Option ``busy_timeout``: seconds a write
    waits for the file lock (10).
    """

    def __init__(
        self,
        url: str = "sqlite://",
        *,
        namespace: str = "default",
        options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.path = sqlite_path(url)
        self._busy_timeout = float((options or {}).get("busy_timeout", 10.0))
        self._clock = clock
        self._db: _Database | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} namespace={self.namespace}>"

    async def connect(self) -> None:
        """Open the file in this instance's thread and create the tables; idempotent."""
        async with self._lock:
            if self._db is not None:
                return
            executor = ThreadPoolExecutor(1, thread_name_prefix="celeriac-beat-sqlite")
            db = _Database(self.path, self.namespace, self._busy_timeout)
            try:
                await asyncio.get_running_loop().run_in_executor(executor, db.open)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._db, self._executor = db, executor

    async def close(self) -> None:
        """Close the file."""
        db, executor = self._db, self._executor
        if db is None or executor is None:
            return
        self._db = self._executor = None
        try:
            await asyncio.get_running_loop().run_in_executor(executor, db.close)
        finally:
            executor.shutdown(wait=False)

    async def _call(self, fn: Callable[[_Database], T]) -> T:
        if self._db is None:
            await self.connect()
        db, executor = self._db, self._executor
        assert db is not None and executor is not None
        return await asyncio.get_running_loop().run_in_executor(executor, fn, db)

    async def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take a free or expired lease, or extend ``holder``'s own one."""
        return await self._call(lambda db: db.acquire(holder, ttl, self._clock()))

    async def release_lease(self, holder: str) -> None:
        """Drop the lease if ``holder`` has it."""
        await self._call(lambda db: db.release(holder))

    async def lease_holder(self) -> str | None:
        """The holder of the unexpired lease, or None."""
        return await self._call(lambda db: db.holder(self._clock()))

    async def load(self) -> dict[str, float]:
        """Every entry's last run."""
        return await self._call(_Database.load)

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        """Compare-and-set ``entry``'s last run, only while ``holder`` holds the lease."""
        # The time is read in the database thread, right before the check, so a pause
        # of this process between the call and the check cannot stretch the lease.
        return await self._call(lambda db: db.claim(holder, entry, expected, new, self._clock()))

    async def revert(self, holder: str, entry: str, claimed: float, previous: float | None) -> bool:
        """Put ``previous`` back if the last run is still ``claimed`` by ``holder``."""
        return await self._call(
            lambda db: db.revert(holder, entry, claimed, previous, self._clock())
        )
