"""What every SQLite store of celeriac shares: switching to WAL, and its write transaction."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["enable_wal", "write_transaction"]


def enable_wal(conn: sqlite3.Connection, timeout: float) -> str:
    """Switch the file to WAL and return the journal mode now in force.

    Retried for up to ``timeout`` seconds: when two processes open a brand-new file at
    once, the switch can fail with "database is locked" without waiting for busy_timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on an autocommit connection (``isolation_level=None``).

    IMMEDIATE takes the write lock up front (waiting up to ``busy_timeout``), so a
    read-check-write inside cannot interleave with another process doing the same, and a
    transaction never fails half-way trying to upgrade a stale read snapshot.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
