"""The SQLite schedule store: beat state in a file, by default the embedded broker's.

Tables ``celeriac_beat_lease`` (one row per namespace: holder and expiry, epoch seconds)
and ``celeriac_beat_state`` (last run per entry) live next to the transport's tables.
Like the transport, each instance owns one
:class:`~celeriac.engines.sqlite.connection.SQLiteFile` (a connection on a thread of
its own, the file in WAL mode), and every write is one ``BEGIN IMMEDIATE``
transaction: taking the lease and claiming a tick (lease check + compare-and-set) are
atomic across processes. Lease times come from the local wall clock, which all
processes sharing a file on one host have in common.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from celeriac.engines.sqlite.connection import SQLiteFile, sqlite_path, write_transaction

__all__ = ["SQLiteStore"]

Clock = Callable[[], float]

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


def _acquire(
    conn: sqlite3.Connection, namespace: str, holder: str, ttl: float, clock: Clock
) -> bool:
    """Take or extend the lease; True if ``holder`` has it now."""
    now = clock()
    with write_transaction(conn):
        return conn.execute(_ACQUIRE, (namespace, holder, now + ttl, now)).rowcount == 1


def _release(conn: sqlite3.Connection, namespace: str, holder: str) -> None:
    """Delete the lease row if ``holder`` has it."""
    with write_transaction(conn):
        conn.execute(
            "DELETE FROM celeriac_beat_lease WHERE namespace = ? AND holder = ?",
            (namespace, holder),
        )


def _holder(conn: sqlite3.Connection, namespace: str, clock: Clock) -> str | None:
    """The holder of the unexpired lease."""
    row = conn.execute(
        "SELECT holder FROM celeriac_beat_lease WHERE namespace = ? AND expires_at > ?",
        (namespace, clock()),
    ).fetchone()
    return None if row is None else str(row[0])


def _load(conn: sqlite3.Connection, namespace: str) -> dict[str, float]:
    """Every entry's last run."""
    rows = conn.execute(
        "SELECT entry, last_run FROM celeriac_beat_state WHERE namespace = ?", (namespace,)
    )
    return {str(entry): float(last_run) for entry, last_run in rows}


def _claim(
    conn: sqlite3.Connection,
    namespace: str,
    holder: str,
    entry: str,
    expected: float | None,
    new: float,
    clock: Clock,
) -> bool:
    """Lease check and compare-and-set of the last run, in one transaction."""
    with write_transaction(conn):
        now = clock()
        if conn.execute(_HOLDS, (namespace, holder, now)).fetchone() is None:
            return False
        if expected is None:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO celeriac_beat_state VALUES (?, ?, ?, ?, ?)",
                (namespace, entry, new, holder, now),
            )
        else:
            cursor = conn.execute(
                "UPDATE celeriac_beat_state SET last_run = ?, claimed_by = ?, updated_at = ?"
                " WHERE namespace = ? AND entry = ? AND last_run = ?",
                (new, holder, now, namespace, entry, expected),
            )
        return cursor.rowcount == 1


def _revert(
    conn: sqlite3.Connection,
    namespace: str,
    holder: str,
    entry: str,
    claimed: float,
    previous: float | None,
    clock: Clock,
) -> bool:
    """Put ``previous`` back (delete the row when None) if ``holder``'s claim is current."""
    mine = " WHERE namespace = ? AND entry = ? AND last_run = ? AND claimed_by = ?"
    key = (namespace, entry, claimed, holder)
    with write_transaction(conn):
        if previous is None:
            cursor = conn.execute("DELETE FROM celeriac_beat_state" + mine, key)
        else:
            cursor = conn.execute(
                "UPDATE celeriac_beat_state SET last_run = ?, claimed_by = '', updated_at = ?"
                + mine,
                (previous, clock(), *key),
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
        clock: Clock = time.time,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.path = sqlite_path(url)
        self._clock = clock
        self._file = SQLiteFile(
            self.path,
            busy_timeout=float((options or {}).get("busy_timeout", 10.0)),
            schema=_SCHEMA,
            what="beat store",
        )

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path} namespace={self.namespace}>"

    async def connect(self) -> None:
        """Open the file on its own thread and create the tables; idempotent."""
        await self._file.open()

    async def close(self) -> None:
        """Close the file."""
        await self._file.close()

    # The clock is read on the database thread, right before the check, so a pause of
    # this process between the call and the check cannot stretch the lease.

    async def acquire_lease(self, holder: str, ttl: float) -> bool:
        """Take a free or expired lease, or extend ``holder``'s own one."""
        return await self._file.call(_acquire, self.namespace, holder, ttl, self._clock)

    async def release_lease(self, holder: str) -> None:
        """Drop the lease if ``holder`` has it."""
        await self._file.call(_release, self.namespace, holder)

    async def lease_holder(self) -> str | None:
        """The holder of the unexpired lease, or None."""
        return await self._file.call(_holder, self.namespace, self._clock)

    async def load(self) -> dict[str, float]:
        """Every entry's last run."""
        return await self._file.call(_load, self.namespace)

    async def claim(self, holder: str, entry: str, expected: float | None, new: float) -> bool:
        """Compare-and-set ``entry``'s last run, only while ``holder`` holds the lease."""
        return await self._file.call(
            _claim, self.namespace, holder, entry, expected, new, self._clock
        )

    async def revert(self, holder: str, entry: str, claimed: float, previous: float | None) -> bool:
        """Put ``previous`` back if the last run is still ``claimed`` by ``holder``."""
        return await self._file.call(
            _revert, self.namespace, holder, entry, claimed, previous, self._clock
        )
