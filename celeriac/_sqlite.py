"""What every SQLite store of celeriac shares: its write transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["write_transaction"]


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
