"""The SQLite file's thread and connection: a call right after a close gets its own."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from celeriac.engines.sqlite.connection import SQLiteFile


def _one(conn: sqlite3.Connection) -> list[tuple[int]]:
    return list(conn.execute("SELECT 1"))


def _nap(conn: sqlite3.Connection) -> None:
    del conn
    time.sleep(0.3)


async def test_a_call_after_a_close_opens_a_connection_the_close_leaves_alone(
    tmp_path: Path,
) -> None:
    """A history's last flush can run while its store is being closed: the close ends the
    old thread's connection only (SQLite refuses one thread closing another's)."""
    file = SQLiteFile(tmp_path / "f.sqlite", busy_timeout=1.0, schema=(), what="test file")
    await file.open()
    napping = file.submit(_nap)  # the old thread is busy: the close waits behind it
    closing = asyncio.create_task(file.close())
    await asyncio.sleep(0)  # the close began: its part is queued on the old thread
    reopened = await file.call(_one)  # a new thread and connection, opened meanwhile
    await closing
    await napping
    assert reopened == [(1,)]
    assert await file.call(_one) == [(1,)]  # the new connection was not closed with the old
    await file.close()
