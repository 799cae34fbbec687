"""Task history that survives a restart: the dashboard's tasks kept in a SQLite file.

The feed's :class:`~celeriac.events.state.State` holds the newest ``max_tasks`` in memory and
answers the pages and the API. A :class:`History` writes each task that events changed to
a SQLite file once a second (one transaction a batch, on the file's own thread, so the
event loop never waits on the disk), and when the dashboard starts it loads the newest
``max_tasks`` back (by the time of their latest event): yesterday's failures, their
tracebacks and the overview's counts are there after a restart. A task older than what
memory holds is still found by id (``/api/task/info``, the task page) from the file.
Rows go when they are older than ``max_age`` seconds (since their latest event) or beyond
the newest ``max_rows``, checked once a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

from celeriac.engines.sqlite.connection import SQLiteFile, write_transaction
from celeriac.events.state import State, Task, Worker
from celeriac.web.charts import Series
from celeriac.web.records import TASK_FIELDS, task_record
from celeriac.web.tally import Tally

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MAX_ROWS", "History", "restore_task"]

logger = logging.getLogger("celeriac.web")

DEFAULT_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a task stays in the history after its last event (a week)."""

DEFAULT_MAX_ROWS = 1_000_000
"""Tasks the history keeps at most (the least recently updated go first)."""

PRUNE_EVERY = 60.0
"""Seconds between two passes of the retention rules."""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS dashboard_tasks ("
    " uuid TEXT PRIMARY KEY, name TEXT, state TEXT, worker TEXT,"
    " updated REAL NOT NULL, record TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS dashboard_tasks_updated ON dashboard_tasks (updated)",
)

# What a stored record gives back to a Task: its fields but those derived from others.
_RESTORED = frozenset(TASK_FIELDS) - {"uuid", "worker", "root", "parent", "children"}

_Row = tuple[str, str | None, str, str | None, float, dict[str, Any]]


def restore_task(record: dict[str, Any]) -> Task:
    """The :class:`Task` a stored record describes (its worker as a detached name)."""
    fields = {key: value for key, value in record.items() if key in _RESTORED}
    task = Task(record["uuid"], **fields)
    hostname = record.get("worker")
    if hostname is not None:
        task.worker = Worker(hostname)
    task.timeline = [(state, when) for state, when in record.get("timeline") or ()]
    return task


class History:
    """The dashboard's tasks in the SQLite file at ``path``."""

    def __init__(
        self,
        path: str | Path,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        max_rows: int = DEFAULT_MAX_ROWS,
        interval: float = 1.0,
    ) -> None:
        if max_age <= 0 or max_rows < 1:
            raise ValueError("the history needs a positive max_age and max_rows")
        self.path = Path(path)
        self.max_age = max_age
        self.max_rows = max_rows
        self.interval = interval
        self._file = SQLiteFile(
            self.path, busy_timeout=5.0, schema=_SCHEMA, what="dashboard history"
        )
        self._changed: set[str] = set()

    def __repr__(self) -> str:
        return f"<History {self.path}>"

    def changed(self, uuid: str) -> None:
        """Note that an event changed task ``uuid``: it is written at the next flush."""
        self._changed.add(uuid)

    async def load(self, state: State, tally: Tally) -> int:
        """Put the newest tasks (as many as ``state`` holds) into ``state``; how many."""
        records = await self._file.call(_newest, state.max_tasks_in_memory)
        for record in reversed(records):  # oldest first: the state keeps the newest last
            task = restore_task(record)
            if task.uuid is not None and task.uuid not in state.tasks:
                state.add_task(task)
                tally.add(task)
        return len(records)

    async def chart(self, series: Series) -> int:
        """Count into ``series`` the tasks that finished within its window; how many.

        Read from the file rather than from memory, which may hold fewer tasks than an
        hour brings."""
        rows = await self._file.call(_finished_since, time.time() - series.window)
        for state, when, runtime in rows:
            if isinstance(when, int | float):
                number = float(runtime) if isinstance(runtime, int | float) else None
                series.add(float(when), failed=state == "FAILURE", runtime=number)
        return len(rows)

    async def find(self, uuid: str) -> dict[str, Any] | None:
        """The stored record of task ``uuid``, or None."""
        return await self._file.call(_find, uuid)

    async def flush(self, state: State) -> int:
        """Write the tasks changed since the last flush; how many were written."""
        if not self._changed:
            return 0
        uuids, self._changed = self._changed, set()
        now = time.time()
        rows: list[_Row] = []
        for uuid in uuids:
            task = state.tasks.get(uuid)
            if task is not None:  # else memory dropped it already: its last write stands
                rows.append(_row(task, now))
        if rows:
            await self._file.call(_upsert, rows)
        return len(rows)

    async def prune(self) -> int:
        """Apply the retention rules; how many rows went."""
        return await self._file.call(_prune, time.time() - self.max_age, self.max_rows)

    async def run(self, state: State) -> None:
        """Flush every ``interval`` seconds and prune every minute, until cancelled (then
        a last flush, and the file is closed)."""
        last_prune = 0.0
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.flush(state)
                    if time.monotonic() - last_prune >= PRUNE_EVERY:
                        last_prune = time.monotonic()
                        await self.prune()
                except (OSError, sqlite3.Error) as exc:
                    logger.warning("the dashboard could not write its history %s: %s", self, exc)
        finally:
            with contextlib.suppress(OSError, sqlite3.Error, RuntimeError):
                await asyncio.shield(self.flush(state))
            await self._file.close()

    async def close(self) -> None:
        """Close the file (a later call opens it again)."""
        await self._file.close()


def _row(task: Task, now: float) -> _Row:
    """The task's row; ``updated`` is the time of its latest event (else ``now``), which
    orders the tasks as the state does and ages them for the retention rules."""
    record = task_record(task)  # a new dict: encoded on the file's thread
    record["timeline"] = list(task.timeline)
    hostname = task.worker.hostname if task.worker is not None else None
    updated = task.timestamp if isinstance(task.timestamp, int | float) else now
    return (str(task.uuid), task.name, task.state, hostname, float(updated), record)


def _upsert(conn: sqlite3.Connection, rows: list[_Row]) -> None:
    encoded = [(*row[:5], json.dumps(row[5], default=repr)) for row in rows]
    with write_transaction(conn):
        conn.executemany(
            "INSERT INTO dashboard_tasks (uuid, name, state, worker, updated, record)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (uuid) DO UPDATE SET name = excluded.name,"
            " state = excluded.state, worker = excluded.worker, updated = excluded.updated,"
            " record = excluded.record",
            encoded,
        )


def _newest(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    found = conn.execute(
        "SELECT record FROM dashboard_tasks ORDER BY updated DESC LIMIT ?", (limit,)
    )
    return [json.loads(text) for (text,) in found]


def _finished_since(conn: sqlite3.Connection, oldest: float) -> list[tuple[str, Any, Any]]:
    found = conn.execute(
        "SELECT state, json_extract(record, CASE state WHEN 'SUCCESS' THEN '$.succeeded'"
        " ELSE '$.failed' END), json_extract(record, '$.runtime') FROM dashboard_tasks"
        " WHERE updated >= ? AND state IN ('SUCCESS', 'FAILURE')",
        (oldest,),
    )
    return [(str(state), when, runtime) for state, when, runtime in found]


def _find(conn: sqlite3.Connection, uuid: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT record FROM dashboard_tasks WHERE uuid = ?", (uuid,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def _prune(conn: sqlite3.Connection, oldest: float, max_rows: int) -> int:
    with write_transaction(conn):
        gone = conn.execute("DELETE FROM dashboard_tasks WHERE updated < ?", (oldest,)).rowcount
        gone += conn.execute(
            "DELETE FROM dashboard_tasks WHERE uuid IN (SELECT uuid FROM dashboard_tasks"
            " ORDER BY updated DESC LIMIT -1 OFFSET ?)",
            (max_rows,),
        ).rowcount
    return int(gone)
