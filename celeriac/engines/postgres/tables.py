"""Celery's result tables in PostgreSQL, what celeriac adds to them, and documents as rows.

The layout is Celery 5.7's database backend's (``celery/backends/database/models.py``),
so a Celery client or worker on the same database reads and writes the same rows:

* ``celery_taskmeta``: ``id`` (from the sequence ``task_id_sequence``), ``task_id``
  (unique), ``status``, ``result`` (the result encoded with ``result_serializer``, BYTEA),
  ``date_done`` (UTC, ``TIMESTAMP`` without zone; NULL until ready), ``traceback``,
  ``children`` (encoded like ``result``; NULL when none), and ``result_extended``'s
  ``name``, ``args``, ``kwargs`` (encoded), ``worker``, ``retries``, ``queue``, ``stamps``.
* ``celery_tasksetmeta``: ``id`` (``taskset_id_sequence``), ``taskset_id`` (unique),
  ``result`` (the GroupResult's ``[[id, None], [[[task_id, None], None], ...]]`` encoded),
  ``date_done``.

``database_table_names`` renames both, ``database_table_schemas`` puts them in schemas.
celeriac adds nullable columns Celery does not read (Celery itself adds missing columns
the same way): ``celeriac_expires_at`` (epoch seconds after which celeriac no longer
returns the row: ``result_expires`` at write time, Infinity for none, NULL in rows Celery
wrote, which expire by ``date_done`` on ``cleanup()``) on both tables, and
``celeriac_extra`` on the task table (the document's keys that have no column, such as
``group_id`` and ``parent_id``, so celeriac reads back what it wrote). Two statement
triggers NOTIFY the ids of rows that became ready, whoever wrote them, so waiters wake for
Celery's writes too. Chords are counted in celeriac's own ``celeriac_chord`` and
``celeriac_chord_part``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.backends.base import Meta
from celeriac.exceptions import ContentDisallowed, MissingDependency
from celeriac.protocol.serializers import Serializer, get_serializer
from celeriac.states import READY_STATES

try:
    from sqlalchemy import (
        Boolean,
        Column,
        DateTime,
        Float,
        Integer,
        LargeBinary,
        MetaData,
        PrimaryKeyConstraint,
        String,
        Table,
        Text,
        text,
    )
    from sqlalchemy import (
        Sequence as SQLSequence,
    )
    from sqlalchemy.ext.asyncio import AsyncConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL result backend: pip install 'celeriac[sql]'") from exc

__all__ = [
    "COLUMNS",
    "TableNames",
    "group_ids",
    "group_value",
    "meta_from_row",
    "prepare_result_tables",
    "result_tables",
    "row_values",
]

COLUMNS = (
    "task_id", "status", "result", "traceback", "children", "date_done", "name", "args",
    "kwargs", "worker", "retries", "queue", "celeriac_extra",
)  # fmt: skip
"""The task table's columns celeriac writes and reads, in :func:`row_values`' order."""
_IN_COLUMNS = frozenset(COLUMNS) - {"celeriac_extra"}
_NOTIFY_FUNCTION = "celeriac_notify_ready_v1"
_TRIGGERS = {"celeriac_ready_insert": "INSERT", "celeriac_ready_update": "UPDATE"}
_PAYLOAD_MAX = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more


class TableNames:
    """Names and schemas of the result tables (``database_table_names`` / ``_schemas``)."""

    def __init__(
        self,
        names: Mapping[str, Any] | None,
        task_schema: str | None,
        group_schema: str | None,
    ) -> None:
        names = names or {}
        self.task = str(names.get("task") or "celery_taskmeta")
        self.group = str(names.get("group") or "celery_tasksetmeta")
        self.task_schema = task_schema
        self.group_schema = group_schema


def result_tables(names: TableNames) -> MetaData:
    """Celery's two tables with celeriac's columns, and celeriac's chord tables."""
    metadata = MetaData(schema=names.task_schema)
    Table(
        names.task,
        metadata,
        Column(
            "id",
            Integer,
            SQLSequence("task_id_sequence", schema=names.task_schema),
            primary_key=True,
            autoincrement=True,
        ),
        Column("task_id", String(155), unique=True),
        Column("status", String(50)),
        Column("result", LargeBinary),
        Column("date_done", DateTime, index=True),
        Column("traceback", Text),
        Column("children", LargeBinary),
        Column("name", String(155)),
        Column("args", LargeBinary),
        Column("kwargs", LargeBinary),
        Column("worker", String(155)),
        Column("retries", Integer),
        Column("queue", String(155)),
        Column("stamps", LargeBinary),
        Column("celeriac_expires_at", Float(53), index=True),
        Column("celeriac_extra", LargeBinary),
        info={"role": "taskmeta"},
    )
    Table(
        names.group,
        metadata,
        Column(
            "id",
            Integer,
            SQLSequence("taskset_id_sequence", schema=names.group_schema),
            primary_key=True,
            autoincrement=True,
        ),
        Column("taskset_id", String(155), unique=True),
        Column("result", LargeBinary),
        Column("date_done", DateTime, index=True),
        Column("celeriac_expires_at", Float(53), index=True),
        schema=names.group_schema,
        info={"role": "groupmeta"},
    )
    Table(
        "celeriac_chord",
        metadata,
        Column("group_id", String(255), primary_key=True),
        Column("size", Integer),
        Column("done", Boolean, nullable=False, default=False),
        Column("expires_at", Float(53), index=True),
    )
    Table(
        "celeriac_chord_part",
        metadata,
        Column("group_id", String(255), nullable=False),
        Column("idx", Integer, nullable=False),
        Column("part", LargeBinary, nullable=False),
        PrimaryKeyConstraint("group_id", "idx"),
    )
    return metadata


# -- documents <-> rows ---------------------------------------------------------------


def _date_column(value: Any) -> dt.datetime | None:
    """``date_done`` as Celery's column holds it: naive UTC."""
    if value is None:
        return None
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when


def _date_text(value: dt.datetime) -> str:
    """The column's naive UTC time as celeriac's documents write it (ISO 8601, UTC)."""
    return value.replace(tzinfo=dt.UTC).isoformat()


def _encoded(codec: Serializer, value: Any) -> bytes | None:
    return None if value is None else codec.dumps(value)


def row_values(task_id: str, meta: Meta, codec: Serializer) -> tuple[Any, ...]:
    """The :data:`COLUMNS` of one document (keys without a column go to ``celeriac_extra``)."""
    get = meta.get
    date = _date_column(get("date_done"))
    extra = {key: value for key, value in meta.items() if key not in _IN_COLUMNS}
    if date is not None and _date_text(date) != get("date_done"):
        extra["date_done"] = meta["date_done"]  # written some other way: keep it as it was
    return (
        task_id,
        str(get("status")),
        codec.dumps(get("result")),
        get("traceback"),
        codec.dumps(get("children")) if get("children") else None,
        date,
        get("name"),
        _encoded(codec, get("args")),
        _encoded(codec, get("kwargs")),
        get("worker"),
        get("retries"),
        get("queue"),
        codec.dumps(extra) if extra else None,
    )


_PICKLE_NAMES = frozenset({"pickle", "application/x-python-serialize"})


def _decode(codec: Serializer, blob: Any) -> Any:
    """A stored value. Rows written by Celery before 5.7 hold pickles: those are read
    when ``result_accept_content`` lists pickle, else refused with an error saying so."""
    raw = bytes(blob)
    try:
        return codec.loads(raw)
    except Exception:
        if raw[:1] != b"\x80" or codec.name == "pickle":
            raise
    if not _PICKLE_NAMES & set(getattr(codec, "accept", None) or ()):
        raise ContentDisallowed(
            "a result row holds a pickle (Celery before 5.7 stored results as pickles):"
            " add 'pickle' to result_accept_content to read it"
        )
    return get_serializer("pickle").loads(raw)


def meta_from_row(row: Sequence[Any], codec: Serializer) -> Meta:
    """The document of a task-table row (:data:`COLUMNS`), as celeriac or Celery wrote it."""
    (task_id, status, result, traceback, children, date, name, args, kwargs, worker, retries,
     queue, extra_blob) = row  # fmt: skip
    extra: dict[str, Any] = {} if extra_blob is None else _decode(codec, extra_blob)
    meta: Meta = {
        "status": status,
        "result": None if result is None else _decode(codec, result),
        "traceback": traceback,
        "children": [] if children is None else _decode(codec, children),
        "date_done": extra.pop("date_done", None) or (None if date is None else _date_text(date)),
    }
    found = {"name": name, "worker": worker, "retries": retries, "queue": queue}
    found["args"] = None if args is None else _decode(codec, args)
    found["kwargs"] = None if kwargs is None else _decode(codec, kwargs)
    meta.update((k, v) for k, v in found.items() if v is not None)
    meta.update(extra)
    meta["task_id"] = task_id
    return meta


def group_value(group_id: str, task_ids: Sequence[str]) -> list[Any]:
    """A saved group as Celery's ``GroupResult.as_tuple()`` (what its ``result`` holds)."""
    return [[group_id, None], [[[task_id, None], None] for task_id in task_ids]]


def group_ids(value: Any) -> list[str]:
    """The member ids of a saved group's decoded ``result``."""
    members = value[1] if isinstance(value, list | tuple) and len(value) == 2 else []
    return [str(member[0][0]) for member in members]


# -- set-up ---------------------------------------------------------------------------


def _notify_function(qualified: str) -> str:
    ready = ", ".join(f"'{state}'" for state in sorted(READY_STATES))
    return f"""
CREATE OR REPLACE FUNCTION {qualified}() RETURNS trigger LANGUAGE plpgsql AS $body$
DECLARE
  ids text[] := '{{}}';
  size integer := 2;
  cost integer;
  tid text;
BEGIN
  FOR tid IN SELECT task_id FROM ready_rows WHERE status IN ({ready}) LOOP
    cost := octet_length(to_json(tid)::text) + 1;
    IF size + cost > {_PAYLOAD_MAX} THEN
      PERFORM pg_notify(TG_ARGV[0], array_to_json(ids)::text);
      ids := '{{}}';
      size := 2;
    END IF;
    ids := ids || tid;
    size := size + cost;
  END LOOP;
  IF cardinality(ids) > 0 THEN
    PERFORM pg_notify(TG_ARGV[0], array_to_json(ids)::text);
  END IF;
  RETURN NULL;
END
$body$"""


async def _rows(conn: AsyncConnection, statement: str, **params: Any) -> list[Any]:
    return list((await conn.execute(text(statement), params)).fetchall())


async def _add_missing_columns(conn: AsyncConnection, table: Table) -> list[str]:
    """ALTER a table someone else created to add the nullable columns it lacks."""
    found = await _rows(
        conn,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = COALESCE(:schema, current_schema()) AND table_name = :name",
        schema=table.schema,
        name=table.name,
    )
    have = {row[0] for row in found}
    preparer = conn.dialect.identifier_preparer
    added = []
    for column in table.columns:
        if column.name not in have and column.nullable:
            kind = column.type.compile(conn.dialect)
            await conn.execute(
                text(
                    f"ALTER TABLE {preparer.format_table(table)}"
                    f" ADD COLUMN {preparer.quote(column.name)} {kind}"
                )
            )
            added.append(column.name)
    return added


async def _add_triggers(conn: AsyncConnection, table: Table, channel: str) -> None:
    """The statement triggers that NOTIFY ``channel`` of rows that became ready."""
    preparer = conn.dialect.identifier_preparer
    schema = f"{preparer.quote_schema(table.schema)}." if table.schema else ""
    function = f"{schema}{_NOTIFY_FUNCTION}"
    qualified = preparer.format_table(table)
    existing = await _rows(
        conn,
        "SELECT tgname FROM pg_trigger WHERE tgrelid = CAST(:table AS regclass)",
        table=qualified,
    )
    missing = [name for name in _TRIGGERS if name not in {row[0] for row in existing}]
    if not missing:
        return
    await conn.execute(text(_notify_function(function)))
    literal = "'" + channel.replace("'", "''") + "'"
    for name in missing:
        await conn.execute(
            text(
                f"CREATE TRIGGER {name} AFTER {_TRIGGERS[name]} ON {qualified}"
                " REFERENCING NEW TABLE AS ready_rows FOR EACH STATEMENT"
                f" EXECUTE FUNCTION {function}({literal})"
            )
        )


async def _add_missing_indexes(conn: AsyncConnection, table: Table) -> None:
    for index in table.indexes:
        found = await _rows(
            conn,
            "SELECT 1 FROM pg_indexes WHERE schemaname = COALESCE(:schema, current_schema())"
            " AND indexname = :name",
            schema=table.schema,
            name=index.name,
        )
        if not found:
            await conn.run_sync(index.create)


async def prepare_result_tables(
    conn: AsyncConnection, metadata: MetaData, channel: str
) -> dict[str, list[str]]:
    """Bring existing result tables up to celeriac's layout; the columns added, by table."""
    added: dict[str, list[str]] = {}
    for table in metadata.tables.values():
        columns = await _add_missing_columns(conn, table)
        if columns:
            added[table.name] = columns
            await _add_missing_indexes(conn, table)
        if table.info.get("role") == "taskmeta":
            await _add_triggers(conn, table, channel)
    return added
