"""The dashboard's task history in the app's PostgreSQL result database.

Table ``celeriac_dashboard_tasks`` (created if missing, with its indexes) in the schema the
result backend uses (the ``schema`` option, ``?schema=`` or ``database_table_schemas``, as
:func:`~celeriac.engines.postgres.connection.parse_sql_settings` reads them), on the engine
the result backend shares. A batch is one ``INSERT ... SELECT FROM unnest(arrays)``
statement (one transaction, one round trip), encoded on a worker thread: the event loop
only waits on the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from celeriac.engines.postgres.connection import (
    SQLSettings,
    Tables,
    parse_sql_settings,
    run_statement,
)
from celeriac.web.history import TABLE, Row, decode_record, encode_record
from celeriac.web.history_query import INDEXED, READY_LIST, select_statement
from celeriac.web.records import TaskQuery
from celeriac.web.tally import Counted, Key

try:
    from sqlalchemy import Column, Float, Index, MetaData, Table, Text
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from celeriac.exceptions import MissingDependency

    raise MissingDependency("the history in PostgreSQL: pip install 'celeriac[sql]'") from exc

__all__ = ["SQLHistory", "history_table"]

# A row's run time as the tally counts it (celeriac.web.tally.Key): a finished task's, when
# its record holds a number. (Nested: the record is parsed only for finished tasks.)
_RUNTIME = (
    f"CASE WHEN state IN ({READY_LIST}) THEN CASE WHEN json_typeof(CAST(record AS json) ->"
    " 'runtime') = 'number' THEN CAST(CAST(record AS json) ->> 'runtime' AS float8) END END"
)
_GROUPED = f"coalesce(name, '?'), state, count(*), coalesce(sum({_RUNTIME}), 0), count({_RUNTIME})"
_TEXT = ("uuid", "name", "state", "worker")
_KEPT = ("name", "worker", "received", "started")
_FLOAT = ("updated", "received", "started")


def history_table(schema: str | None) -> MetaData:
    """The history's table and indexes, in ``schema``."""
    metadata = MetaData()
    table = Table(
        TABLE, metadata,
        Column("uuid", Text, primary_key=True), Column("name", Text), Column("state", Text),
        Column("worker", Text), Column("updated", Float(53), nullable=False),
        Column("received", Float(53)), Column("started", Float(53)), Column("haystack", Text),
        Column("record", Text, nullable=False),
        schema=schema, info={"role": "tasks"},
    )  # fmt: skip
    Index(f"{TABLE}_updated", table.c.updated)
    for column in INDEXED:
        Index(f"{TABLE}_{column}", table.c[column], table.c.updated)
    return metadata


def _statements(names: Mapping[str, str]) -> dict[str, str]:
    t = names["tasks"]
    arrays = ", ".join(
        [f"CAST(:{c} AS text[])" for c in _TEXT]
        + [f"CAST(:{c} AS float8[])" for c in _FLOAT]
        + ["CAST(:haystack AS text[])", "CAST(:record AS text[])"]
    )
    columns = ", ".join((*_TEXT, *_FLOAT, "haystack", "record"))
    # A row with no name is of a task memory had dropped before this event (a long task,
    # with many newer ones): it adds to the stored row instead of replacing what it did not
    # know.
    kept = ", ".join(f"{c} = coalesce(excluded.{c}, stored.{c})" for c in _KEPT)
    added = (
        "haystack = CASE WHEN excluded.name IS NULL THEN stored.haystack || chr(10) ||"
        " excluded.haystack ELSE excluded.haystack END, record = CASE WHEN excluded.name IS"
        " NULL THEN CAST(CAST(stored.record AS jsonb) || CAST(excluded.record AS jsonb) AS text)"
        " ELSE excluded.record END"
    )
    return {
        "upsert": f"INSERT INTO {t} AS stored ({columns}) SELECT * FROM unnest({arrays})"
        f" ON CONFLICT (uuid) DO UPDATE SET state = excluded.state,"
        f" updated = excluded.updated, {kept}, {added}",
        "newest": f"SELECT record FROM {t} ORDER BY updated DESC LIMIT :count",
        "finished": "SELECT state, CAST(CAST(record AS json) ->> (CASE state WHEN 'SUCCESS'"
        " THEN 'succeeded' ELSE 'failed' END) AS float8),"
        " CAST(CAST(record AS json) ->> 'runtime' AS float8)"
        f" FROM {t} WHERE updated >= :oldest AND state IN ('SUCCESS', 'FAILURE')",
        "find": f"SELECT record FROM {t} WHERE uuid = :uuid",
        "replaced": f"SELECT uuid, coalesce(name, '?'), state, {_RUNTIME} FROM {t}"
        " WHERE uuid = ANY(CAST(:uuids AS text[]))",
        "counts": f"SELECT {_GROUPED} FROM {t} GROUP BY 1, 2",
        "expiring": f"SELECT {_GROUPED} FROM {t} WHERE updated < :oldest GROUP BY 1, 2",
        "records": f"SELECT uuid, record FROM {t} WHERE uuid = ANY(CAST(:uuids AS text[]))",
        "expire": f"DELETE FROM {t} WHERE updated < :oldest",
        "edge": f"SELECT updated FROM {t} ORDER BY updated DESC LIMIT 1 OFFSET :skip",
    }


class SQLHistory:
    """A history store in the PostgreSQL database at ``url`` (a result backend URL)."""

    def __init__(self, url: str, options: Mapping[str, Any] | None = None) -> None:
        self.settings: SQLSettings = parse_sql_settings(url, options or {}, role="task")
        self._table = TABLE  # quoted and schema-qualified once the engine is known
        self._tables = Tables(self.settings, history_table(self.settings.schema), self._sql)

    def __repr__(self) -> str:
        where = self.settings.url.render_as_string(hide_password=True)
        return f"<SQLHistory {where} schema={self.settings.schema} table={TABLE}>"

    def _sql(self, names: Mapping[str, str]) -> dict[str, str]:
        self._table = names["tasks"]
        return _statements(names)

    async def _run(self, statement: str, **params: Any) -> list[tuple[Any, ...]]:
        return await self._tables.run(statement, params)

    async def write(self, rows: list[Row]) -> dict[str, Key]:
        """Insert or replace ``rows``: one statement, encoded off the event loop; the keys
        of the rows replaced, by id (read just before: one dashboard writes its history)."""
        if not rows:
            return {}
        params = await asyncio.to_thread(_columns, rows)
        replaced = await self._run("replaced", uuids=params["uuid"])
        await self._run("upsert", **params)
        return {str(uuid): (str(name), str(state), time) for uuid, name, state, time in replaced}

    async def counts(self) -> list[Counted]:
        """Every row, grouped by name and state (a pass over the table)."""
        return [Counted(*group) for group in await self._run("counts")]

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` most recently updated records, newest first."""
        return [decode_record(text) for (text,) in await self._run("newest", count=limit)]

    async def finished_since(self, oldest: float) -> list[tuple[str, Any, Any]]:
        """(state, finished at, runtime) of the tasks done since ``oldest``."""
        found = await self._run("finished", oldest=oldest)
        return [(str(state), when, runtime) for state, when, runtime in found]

    async def find(self, uuid: str) -> dict[str, Any] | None:
        """The record of task ``uuid``, or None."""
        found = await self._run("find", uuid=uuid)
        return dict(decode_record(found[0][0])) if found else None

    async def select(self, query: TaskQuery, count: int) -> list[tuple[str, Any]]:
        """(uuid, sort key) of the first ``count`` rows ``query`` filters and sorts."""
        engine = await self._tables.connect()
        statement, params = select_statement(self._table, query, count)
        return [(str(uuid), key) for uuid, key in await run_statement(engine, statement, params)]

    async def records(self, uuids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of ``uuids`` held here, by id."""
        if not uuids:
            return {}
        found = await self._run("records", uuids=uuids)
        return {str(uuid): decode_record(text) for uuid, text in found}

    async def prune(self, oldest: float, max_rows: int) -> list[Counted]:
        """Delete the rows updated before ``oldest`` and beyond the newest ``max_rows``;
        what went, grouped."""
        gone = await self._expire(oldest)
        edge = await self._run("edge", skip=max_rows - 1)
        if edge:  # the newest max_rows end at the edge's time (ties stay)
            gone += await self._expire(edge[0][0])
        return gone

    async def _expire(self, oldest: float) -> list[Counted]:
        counted = [Counted(*group) for group in await self._run("expiring", oldest=oldest)]
        if counted:
            await self._run("expire", oldest=oldest)
        return counted

    async def close(self) -> None:
        """Let go of the shared engine."""
        await self._tables.close()


def _columns(rows: list[Row]) -> dict[str, list[Any]]:
    """One array per column, the records encoded."""
    params: dict[str, list[Any]] = {c: [getattr(row, c) for row in rows] for c in _TEXT}
    params.update({c: [getattr(row, c) for row in rows] for c in _FLOAT})
    params["haystack"] = [row.haystack for row in rows]
    params["record"] = [encode_record(row.record) for row in rows]
    return params
