"""The dashboard's task history in a SQLite file: its own, or the SQLite result backend's.

Writes go through one connection on a thread of its own, reads (the task list, a task by
id) through another, so a long search never holds up a flush and the event loop waits on
neither (the file is in WAL mode: readers and the writer do not block each other).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from celeriac.engines.sqlite.connection import SQLiteFile, write_transaction
from celeriac.web.history import Row, decode_record, encode_record
from celeriac.web.history_query import INDEXED, READY_LIST, select_statement
from celeriac.web.records import TaskQuery
from celeriac.web.tally import Counted, Key

__all__ = ["FILE_TABLE", "SQLiteHistory"]

_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-variable limit

WRITER_CACHE_KB = 16384
"""The writer connection's page cache (KiB): holds the hot part of the indexes."""

FILE_TABLE = "dashboard_tasks"
"""The table in the dashboard's own file (the name files written before kept)."""

# Added since the first files: filled from the stored record when a file is opened.
_ADDED = {
    "received": "json_extract(record, '$.received')",
    "started": "json_extract(record, '$.started')",
    "haystack": "lower(uuid || char(10) || coalesce(name, '') || char(10)"
    " || coalesce(json_extract(record, '$.args'), '') || char(10)"
    " || coalesce(json_extract(record, '$.kwargs'), '') || char(10)"
    " || coalesce(json_extract(record, '$.result'), '') || char(10)"
    " || coalesce(json_extract(record, '$.exception'), ''))",
}


# A row's run time as the tally counts it (celeriac.web.tally.Key): a finished task's, when
# its record holds a number. (Nested: the record is parsed only for finished tasks.)
_RUNTIME = (
    f"CASE WHEN state IN ({READY_LIST}) THEN CASE WHEN json_type(record, '$.runtime')"
    " IN ('integer', 'real') THEN json_extract(record, '$.runtime') END END"
)
_KEY = f"coalesce(name, '?'), state, {_RUNTIME}"
_GROUPED = f"coalesce(name, '?'), state, count(*), total({_RUNTIME}), count({_RUNTIME})"


# A row with no name is of a task memory had dropped before this event (a long task, with
# many newer ones): it adds to the stored row instead of replacing what it did not know.
_MERGE = (
    "ON CONFLICT (uuid) DO UPDATE SET name = coalesce(excluded.name, name),"
    " state = excluded.state, worker = coalesce(excluded.worker, worker),"
    " updated = excluded.updated, received = coalesce(excluded.received, received),"
    " started = coalesce(excluded.started, started),"
    " haystack = CASE WHEN excluded.name IS NULL THEN haystack || char(10) || excluded.haystack"
    " ELSE excluded.haystack END,"
    " record = CASE WHEN excluded.name IS NULL THEN json_patch(record, excluded.record)"
    " ELSE excluded.record END"
)


def _schema(table: str) -> tuple[str, ...]:
    return (
        f"CREATE TABLE IF NOT EXISTS {table} ("
        " uuid TEXT PRIMARY KEY, name TEXT, state TEXT, worker TEXT, updated REAL NOT NULL,"
        " received REAL, started REAL, haystack TEXT, record TEXT NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {table}_updated ON {table} (updated)",
    )


class SQLiteHistory:
    """A history store: table ``table`` of the SQLite file at ``path``."""

    def __init__(self, path: str | Path, *, table: str = FILE_TABLE) -> None:
        if not table.isidentifier():
            raise ValueError(f"not a table name: {table!r}")
        self.path = Path(path)
        self.table = table
        schema = _schema(table)
        what = "dashboard history"
        self._writer = SQLiteFile(
            self.path, busy_timeout=5.0, schema=schema, what=what, upgrade=self._upgrade
        )
        self._reader = SQLiteFile(self.path, busy_timeout=5.0, schema=schema, what=what)

    def __repr__(self) -> str:
        return f"<SQLiteHistory {self.path} table={self.table}>"

    def _upgrade(self, conn: sqlite3.Connection) -> None:
        """Add the filter columns (and their indexes) to a table written before them."""
        # Rows land at random places of the id index: with a million of them, SQLite's
        # default 2 MB page cache makes every insert read pages back from the file.
        conn.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KB}")
        table = self.table
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column, value in _ADDED.items():
            if column not in columns:
                kind = "TEXT" if column == "haystack" else "REAL"
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                conn.execute(f"UPDATE {table} SET {column} = {value}")
        for column in INDEXED:
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {table}_{column} ON {table} ({column}, updated)"
            )

    async def _read(self, statement: str, params: Any) -> list[tuple[Any, ...]]:
        if not self._writer.is_open:  # the writer creates and upgrades the table first
            await self._writer.open()
        return await self._reader.call(_fetch, statement, params)

    async def write(self, rows: list[Row]) -> dict[str, Key]:
        """Insert or replace ``rows`` in one transaction (encoded on the writer's thread);
        the keys of the rows replaced, by id."""
        if not rows:
            return {}
        return await self._writer.call(_upsert, self.table, rows)

    async def counts(self) -> list[Counted]:
        """Every row, grouped by name and state (a pass over the table)."""
        found = await self._read(f"SELECT {_GROUPED} FROM {self.table} GROUP BY 1, 2", ())
        return [Counted(*group) for group in found]

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recently updated records, newest first."""
        found = await self._read(
            f"SELECT record FROM {self.table} ORDER BY updated DESC LIMIT ?", (limit,)
        )
        return [decode_record(text) for (text,) in found]

    async def finished_since(self, oldest: float) -> list[tuple[str, Any, Any]]:
        """(state, finished at, runtime) of the tasks done since ``oldest``."""
        found = await self._read(
            "SELECT state, json_extract(record, CASE state WHEN 'SUCCESS' THEN '$.succeeded'"
            " ELSE '$.failed' END), json_extract(record, '$.runtime')"
            f" FROM {self.table} WHERE updated >= ? AND state IN ('SUCCESS', 'FAILURE')",
            (oldest,),
        )
        return [(str(state), when, runtime) for state, when, runtime in found]

    async def find(self, uuid: str) -> dict[str, Any] | None:
        """The record of task ``uuid``, or None."""
        found = await self._read(f"SELECT record FROM {self.table} WHERE uuid = ?", (uuid,))
        return dict(decode_record(found[0][0])) if found else None

    async def select(self, query: TaskQuery, count: int) -> list[tuple[str, Any]]:
        """(uuid, sort key) of the first ``count`` rows ``query`` filters and sorts."""
        statement, params = select_statement(self.table, query, count)
        return [(str(uuid), key) for uuid, key in await self._read(statement, params)]

    async def records(self, uuids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of ``uuids`` held here, by id."""
        found: dict[str, dict[str, Any]] = {}
        for marks, chunk in _id_lists(uuids):
            statement = f"SELECT uuid, record FROM {self.table} WHERE uuid IN ({marks})"
            for uuid, text in await self._read(statement, chunk):
                found[str(uuid)] = decode_record(text)
        return found

    async def prune(self, oldest: float, max_rows: int) -> list[Counted]:
        """Delete the rows updated before ``oldest`` and beyond the newest ``max_rows``;
        what went, grouped."""
        return await self._writer.call(_prune, self.table, oldest, max_rows)

    async def close(self) -> None:
        """Close both connections (a later call opens them again)."""
        await self._reader.close()
        await self._writer.close()


def _id_lists(uuids: list[str]) -> Iterator[tuple[str, list[str]]]:
    """``uuids`` in pieces of :data:`_CHUNK`, each with its ``?, ?, ...`` placeholders."""
    for first in range(0, len(uuids), _CHUNK):
        chunk = uuids[first : first + _CHUNK]
        yield ", ".join("?" * len(chunk)), chunk


def _fetch(conn: sqlite3.Connection, statement: str, params: Any) -> list[tuple[Any, ...]]:
    return list(conn.execute(statement, params))


def _upsert(conn: sqlite3.Connection, table: str, rows: list[Row]) -> dict[str, Key]:
    encoded = [
        (row.uuid, row.name, row.state, row.worker, row.updated, row.received, row.started,
         row.haystack, encode_record(row.record))
        for row in rows
    ]  # fmt: skip
    replaced: dict[str, Key] = {}
    with write_transaction(conn):
        for marks, chunk in _id_lists([row.uuid for row in rows]):  # replaced: the totals'
            statement = f"SELECT uuid, {_KEY} FROM {table} WHERE uuid IN ({marks})"
            replaced.update((uuid, key) for uuid, *key in conn.execute(statement, chunk))
        conn.executemany(
            f"INSERT INTO {table} (uuid, name, state, worker, updated, received, started,"
            f" haystack, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) {_MERGE}",
            encoded,
        )
    return replaced


def _prune(conn: sqlite3.Connection, table: str, oldest: float, max_rows: int) -> list[Counted]:
    with write_transaction(conn):
        gone = _delete(conn, table, "updated < ?", (oldest,))
        # The newest max_rows end at the updated time of the last of them: older rows go.
        # (Read through the index, not a sort of the table.)
        edge = conn.execute(
            f"SELECT updated FROM {table} ORDER BY updated DESC LIMIT 1 OFFSET ?",
            (max_rows - 1,),
        ).fetchone()
        if edge is not None:
            gone += _delete(conn, table, "updated < ?", edge)
            surplus = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] - max_rows
            if surplus > 0:  # rows tied with the edge: the same number of them
                tied = [uuid for (uuid,) in conn.execute(
                    f"SELECT uuid FROM {table} WHERE updated = ? LIMIT ?", (edge[0], surplus)
                )]  # fmt: skip
                for marks, chunk in _id_lists(tied):
                    gone += _delete(conn, table, f"uuid IN ({marks})", chunk)
    return gone


def _delete(conn: sqlite3.Connection, table: str, where: str, params: Any) -> list[Counted]:
    """Delete the rows ``where`` selects; what they were, grouped."""
    grouped = conn.execute(f"SELECT {_GROUPED} FROM {table} WHERE {where} GROUP BY 1, 2", params)
    counted = [Counted(*group) for group in grouped]
    if counted:
        conn.execute(f"DELETE FROM {table} WHERE {where}", params)
    return counted
