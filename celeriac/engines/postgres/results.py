"""PostgreSQL result backend (``db+postgresql://user@host/db``, also ``postgresql://``), in
Celery's tables.

Results go to Celery's ``celery_taskmeta`` and saved groups to ``celery_tasksetmeta``, with
Celery's columns and encoding (:mod:`celeriac.engines.postgres.tables`), so a Celery client or
worker on the same database reads what celeriac writes and the other way round;
``database_table_names`` and ``database_table_schemas`` rename and place them as in Celery.
Tables are created, and brought up to celeriac's layout, when the backend connects
(``database_create_tables_at_setup``, default True) or else on first use; celeriac's old
``celeriac_taskmeta``/``celeriac_groupmeta`` are migrated then, once
(:mod:`celeriac.engines.postgres.migrate`). URLs and connection options are described in
:mod:`celeriac.engines.postgres.connection`.

:meth:`SQLBackend.store` writes a whole batch in ONE statement (``unnest`` of column arrays
into ``INSERT ... ON CONFLICT (task_id) DO UPDATE``); the table's statement triggers
``pg_notify`` the ids of ready rows, one notification per statement, whoever writes them;
:meth:`SQLBackend.wait` follows those notifications (:mod:`celeriac.engines.postgres.listen`),
polling as a safety net. A chord part is recorded in one transaction that first locks the
chord's row (in celeriac's ``celeriac_chord``), so concurrent reports take turns and exactly
one of them sees the chord complete.

Options besides those of :mod:`celeriac.engines.postgres.connection`: ``listen`` (default
True; False waits by polling only), ``poll_interval`` (cap of the polling interval when not
listening, s, default 1), ``safety_interval`` (s between polls while listening, default 5),
``retry_interval_start`` and ``retry_backoff_max`` (first and longest wait before the LISTEN
connection is reopened, s, default 0.1 and 5), ``sweep_interval`` (s between deletions of
some expired rows on store, default 30), and Celery's ``database_table_names``,
``database_table_schemas`` (``task`` and ``group``) and ``database_create_tables_at_setup``.
Unknown options are ignored.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.backends.base import ChordPart, Meta
from celeriac.engines.options import option_flag
from celeriac.engines.postgres.connection import (
    SQLSettings,
    Tables,
    channel_name,
    parse_sql_settings,
)
from celeriac.engines.postgres.listen import LISTEN_RETRY, ResultWatcher
from celeriac.engines.postgres.migrate import migrate_old_tables
from celeriac.engines.postgres.tables import (
    COLUMNS,
    TableNames,
    group_ids,
    group_value,
    meta_from_row,
    prepare_result_tables,
    result_tables,
    row_values,
)
from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.protocol.serializers import Serializer
from celeriac.retry import RetryPolicy
from celeriac.states import READY_STATES

try:
    from sqlalchemy.ext.asyncio import AsyncConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL result backend: pip install 'celeriac[sql]'") from exc

__all__ = ["SQLBackend"]

logger = logging.getLogger("celeriac.engines.postgres")

_SWEEP_LIMIT = 1000  # expired rows removed per opportunistic sweep, to keep store() fast
_LIVE = "(celeriac_expires_at IS NULL OR celeriac_expires_at > :now)"
_TYPES = (
    "text", "text", "bytea", "text", "bytea", "timestamp", "text", "bytea", "bytea", "text",
    "integer", "text", "bytea",
)  # fmt: skip
"""The SQL type of each of :data:`~celeriac.engines.postgres.tables.COLUMNS`."""
# An expired row: past its celeriac expiry, or (written by Celery, without one) done before
# the cutoff that result_expires gives, as Celery's own cleanup decides.
_EXPIRED = "celeriac_expires_at <= :now OR (celeriac_expires_at IS NULL AND date_done < :cutoff)"


def _upsert(meta: str, on_conflict: str) -> str:
    """An INSERT of the rows given as one array per column (and one of expiry times)."""
    arrays = ", ".join(f"CAST(:c{i} AS {kind}[])" for i, kind in enumerate(_TYPES))
    columns = ", ".join((*COLUMNS, "celeriac_expires_at"))
    return (
        f"INSERT INTO {meta} (id, {columns})"
        " SELECT nextval(CAST(:seq AS regclass)), r.*"
        f" FROM unnest({arrays}, CAST(:expires AS float8[])) AS r({columns})"
        f" ON CONFLICT (task_id) {on_conflict}"
    )


def _statements(t: Mapping[str, str]) -> dict[str, str]:
    """The backend's SQL, for the quoted table names in ``t``."""
    meta, group, chord, part = (t[k] for k in ("taskmeta", "groupmeta", "chord", "chord_part"))
    update = ", ".join(f"{c} = excluded.{c}" for c in (*COLUMNS[1:], "celeriac_expires_at"))
    save_group = (
        f"INSERT INTO {group} (id, taskset_id, result, date_done, celeriac_expires_at)"
        " VALUES (nextval(CAST(:seq AS regclass)), :gid, :result, :date_done, :exp)"
        " ON CONFLICT (taskset_id) "
    )
    return {
        "store": _upsert(meta, f"DO UPDATE SET {update}"),
        "migrate": _upsert(meta, "DO NOTHING"),
        "get": f"SELECT {', '.join(COLUMNS)} FROM {meta} WHERE task_id = ANY(:ids) AND {_LIVE}",
        "forget": f"DELETE FROM {meta} WHERE task_id = ANY(:ids)",
        "save_group": save_group + "DO UPDATE SET result = excluded.result,"
        " date_done = excluded.date_done, celeriac_expires_at = excluded.celeriac_expires_at",
        "migrate_group": save_group + "DO NOTHING",
        "restore_group": f"SELECT result FROM {group} WHERE taskset_id = :gid AND {_LIVE}",
        "forget_group": f"DELETE FROM {group} WHERE taskset_id = :gid",
        "set_chord_size": (
            f"WITH stale AS (DELETE FROM {part} WHERE group_id = :gid AND EXISTS"
            f" (SELECT 1 FROM {chord} WHERE group_id = :gid AND expires_at <= :now))"
            f" INSERT INTO {chord} (group_id, size, done, expires_at)"
            " VALUES (:gid, :size, false, :exp) ON CONFLICT (group_id) DO UPDATE SET"
            " size = excluded.size, done = false, expires_at = excluded.expires_at"
        ),
        # Creates the row if needed and locks it (the no-op update) for the transaction;
        # returns the row as it was before this call.
        "chord_grow": (
            f"UPDATE {chord} SET size = COALESCE(size, 0) + :count WHERE group_id = :gid"
            " RETURNING size"
        ),
        "chord_lock": (
            f"INSERT INTO {chord} AS c (group_id, size, done, expires_at)"
            " VALUES (:gid, NULL, false, :exp)"
            " ON CONFLICT (group_id) DO UPDATE SET group_id = c.group_id"
            " RETURNING c.done, c.size, c.expires_at"
        ),
        "chord_reset": (
            f"WITH gone AS (DELETE FROM {part} WHERE group_id = :gid)"
            f" UPDATE {chord} SET size = NULL, done = false WHERE group_id = :gid"
        ),
        "chord_add": (
            f"WITH ins AS (INSERT INTO {part} (group_id, idx, part) VALUES (:gid, :idx, :part)"
            " ON CONFLICT (group_id, idx) DO NOTHING RETURNING 1),"
            f" touch AS (UPDATE {chord} SET expires_at = :exp WHERE group_id = :gid)"
            f" SELECT (SELECT count(*) FROM {part} WHERE group_id = :gid)"
            " + (SELECT count(*) FROM ins)"
        ),
        "chord_take": (
            f"WITH gone AS (DELETE FROM {part} WHERE group_id = :gid RETURNING idx, part),"
            f" mark AS (UPDATE {chord} SET done = true WHERE group_id = :gid)"
            " SELECT part FROM gone ORDER BY idx"
        ),
        "sweep_parts": (
            f"DELETE FROM {part} WHERE group_id IN (SELECT group_id FROM {chord}"
            " WHERE expires_at <= :now LIMIT :limit)"
        ),
        "sweep_chord": (
            f"DELETE FROM {chord} WHERE group_id IN (SELECT group_id FROM {chord}"
            " WHERE expires_at <= :now LIMIT :limit)"
        ),
        **{
            f"sweep_{name}": (
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table}"
                f" WHERE {_EXPIRED} LIMIT :limit)"
            )
            for name, table in (("taskmeta", meta), ("groupmeta", group))
        },
    }


def _quoted(schema: str | None, name: str) -> str:
    """A schema-qualified name as ``regclass`` parses it."""
    quote = '"' + name.replace('"', '""') + '"'
    return quote if schema is None else '"' + schema.replace('"', '""') + '".' + quote


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class SQLBackend:
    """Result backend in PostgreSQL, shared by every process that connects to it.

    ``expires`` is Celery's ``result_expires`` in seconds; None or 0 keeps documents
    until forgotten. Expiry times come from this host's clock, as with SQLite.
    """

    supports_chords = True
    replies = None  # results are stored by task id
    reply_queue = None

    def __init__(
        self,
        url: str,
        *,
        serializer: Serializer,
        expires: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        opts = dict(options or {})
        self.url = url
        self._settings: SQLSettings = parse_sql_settings(url, opts, role="task")
        self._serializer = serializer
        self._expires = expires or None
        self._names = _table_names(opts, self._settings.schema)
        self._metadata = result_tables(self._names)
        self._channel = channel_name("celeriac_result", self._settings.schema)
        self._tables = Tables(self._settings, self._metadata, _statements, self._prepare)
        self._sequences = {
            "task": _quoted(self._names.task_schema, "task_id_sequence"),
            "group": _quoted(self._names.group_schema, "taskset_id_sequence"),
        }
        self._create_at_setup = option_flag(opts.get("database_create_tables_at_setup", True))
        self._sweep_interval = float(opts.get("sweep_interval", 30.0))
        self._last_sweep = time.time()
        self._watcher = ResultWatcher(
            self._fetch_ready,
            self._settings.libpq_url,
            self._channel,
            listen=option_flag(opts.get("listen", True)),
            poll_interval=float(opts.get("poll_interval", 1.0)),
            safety_interval=float(opts.get("safety_interval", 5.0)),
            retry=RetryPolicy.from_options(opts, default=LISTEN_RETRY),
        )

    def __repr__(self) -> str:
        where = self._settings.url.render_as_string(hide_password=True)
        return f"<SQLBackend {where} schema={self._settings.schema}>"

    # -- plumbing -----------------------------------------------------------------

    async def connect(self) -> None:
        """Create the engine and (with ``database_create_tables_at_setup``) the tables."""
        if self._create_at_setup:
            await self._tables.connect()

    async def close(self) -> None:
        """Stop waiting (pending waits raise ConnectionError) and release the engine."""
        await self._watcher.close()
        await self._tables.close()

    async def _prepare(self, conn: AsyncConnection) -> None:
        """In the table set-up transaction: celeriac's columns and triggers, the migration."""
        added = await prepare_result_tables(conn, self._metadata, self._channel)
        for table, columns in added.items():
            logger.warning(
                "result backend: added the nullable column(s) %s to %s (Celery ignores them)",
                ", ".join(columns),
                table,
            )
        await migrate_old_tables(
            conn,
            (self._names.task_schema, self._names.group_schema),
            (self._names.task, self._names.group),
            self._serializer.loads,
            self._write_migrated,
            self._write_migrated_group,
        )

    def _expires_at(self, now: float) -> float:
        """Epoch time at which something written at ``now`` expires (inf: never)."""
        return math.inf if self._expires is None else now + self._expires

    def _cutoff(self) -> dt.datetime | None:
        """Rows Celery wrote (no celeriac expiry) expire when done before this."""
        return None if self._expires is None else _utcnow() - dt.timedelta(seconds=self._expires)

    def _rows(self, items: Sequence[tuple[str, Meta, float]]) -> dict[str, Any]:
        """The store statement's parameters: one array per column."""
        rows = [row_values(task_id, meta, self._serializer) for task_id, meta, _ in items]
        params: dict[str, Any] = {
            f"c{i}": list(column) for i, column in enumerate(zip(*rows, strict=True))
        }
        params["expires"] = [expires for _, _, expires in items]
        params["seq"] = self._sequences["task"]
        return params

    # -- documents ----------------------------------------------------------------

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Upsert a batch in one statement (later writes win); ready ids are notified."""
        if not items:
            return
        latest = dict(items)  # one row per id: a statement may not upsert a row twice
        now = time.time()
        expires = self._expires_at(now)
        await self._tables.run(
            "store", self._rows([(tid, meta, expires) for tid, meta in latest.items()])
        )
        if now - self._last_sweep >= self._sweep_interval:
            self._last_sweep = now
            await self._delete_expired(now, _SWEEP_LIMIT)

    async def _write_migrated(
        self, conn: AsyncConnection, items: list[tuple[str, Meta, float]]
    ) -> None:
        await self._tables.fetch(conn, "migrate", self._rows(items))

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Documents aligned with ``task_ids``; None for unknown or expired ones."""
        if not task_ids:
            return []
        found = await self._select(task_ids)
        return [found.get(tid) for tid in task_ids]

    async def _select(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        """Live documents by id (each a fresh dict)."""
        params = {"ids": list(dict.fromkeys(task_ids)), "now": time.time()}
        rows = await self._tables.run("get", params)
        return {str(row[0]): meta_from_row(row, self._serializer) for row in rows}

    async def _fetch_ready(self, task_ids: Sequence[str]) -> dict[str, Meta]:
        """The documents of the ids among ``task_ids`` that are ready."""
        found = await self._select(task_ids)
        return {tid: meta for tid, meta in found.items() if meta["status"] in READY_STATES}

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        if task_ids:
            await self._tables.run("forget", {"ids": list(task_ids)})

    async def cleanup(self) -> int:
        """Delete expired documents, groups and chord states; return how many."""
        return await self._delete_expired(time.time(), None)

    async def _delete_expired(self, now: float, limit: int | None) -> int:
        """Delete up to ``limit`` (None: all) expired rows per table, in one transaction."""
        params = {"now": now, "limit": limit, "cutoff": self._cutoff()}
        async with self._tables.transaction() as conn:
            # Chord parts carry no expiry of their own: they go with their chord's row.
            await self._tables.fetch(conn, "sweep_parts", params)
            deleted = 0
            for name in ("taskmeta", "groupmeta", "chord"):
                deleted += (await self._tables.fetch(conn, f"sweep_{name}", params))[0][0]
            return deleted

    # -- waiting ------------------------------------------------------------------

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return once a ready document is stored, or the latest document at timeout."""
        doc = (await self.get([task_id]))[0]
        if (doc is not None and doc.get("status") in READY_STATES) or (
            timeout is not None and timeout <= 0
        ):
            return doc
        found: Meta | None = await self._watcher.wait(task_id, timeout)
        if found is None:
            return (await self.get([task_id]))[0]
        return found

    # -- groups and chords --------------------------------------------------------

    def _group_params(
        self, group_id: str, task_ids: Sequence[str], expires: float
    ) -> dict[str, Any]:
        return {
            "gid": group_id,
            "result": self._serializer.dumps(group_value(group_id, task_ids)),
            "date_done": _utcnow(),
            "exp": expires,
            "seq": self._sequences["group"],
        }

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember a group's member ids (as Celery saves a GroupResult), with the expiry."""
        params = self._group_params(group_id, task_ids, self._expires_at(time.time()))
        await self._tables.run("save_group", params)

    async def _write_migrated_group(
        self, conn: AsyncConnection, group_id: str, task_ids: list[str], expires: float
    ) -> None:
        await self._tables.fetch(
            conn, "migrate_group", self._group_params(group_id, task_ids, expires)
        )

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved, unexpired group, or None."""
        rows = await self._tables.run("restore_group", {"gid": group_id, "now": time.time()})
        if not rows or rows[0][0] is None:
            return None
        return group_ids(self._serializer.loads(bytes(rows[0][0])))

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        await self._tables.run("forget_group", {"gid": group_id})

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Record the number of header parts chord ``group_id`` waits for."""
        now = time.time()
        params = {"gid": group_id, "size": size, "now": now, "exp": self._expires_at(now)}
        await self._tables.run("set_chord_size", params)

    async def add_to_chord(self, group_id: str, count: int) -> int:
        """Grow the chord's size by ``count``; the new size."""
        rows = await self._tables.run("chord_grow", {"gid": group_id, "count": count})
        if not rows or not isinstance(rows[0][0], int):
            raise KeyError(f"chord {group_id} has no size: it was never started or is done")
        return int(rows[0][0])

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        """Record a header part; the caller that completes the chord gets all parts."""
        blob = self._serializer.dumps(list(part))
        now = time.time()
        params = {"gid": group_id, "idx": index, "part": blob, "exp": self._expires_at(now)}
        async with self._tables.transaction() as conn:
            blobs = await self._chord_part(conn, params, size, now)
        if blobs is None:
            return None
        parts: list[ChordPart] = []
        for item in blobs:
            task_id, state, result = self._serializer.loads(item)
            parts.append((task_id, state, result))
        return parts

    async def _chord_part(
        self, conn: AsyncConnection, params: Mapping[str, Any], size: int | None, now: float
    ) -> list[bytes] | None:
        """Lock the chord's row, add the part, take all parts if complete (in a transaction)."""
        fetch = self._tables.fetch
        ((done, stored_size, expires_at),) = await fetch(conn, "chord_lock", params)
        if expires_at is not None and expires_at <= now:
            await fetch(conn, "chord_reset", params)  # an old chord's leftovers
            done, stored_size = False, None
        if done:
            return None  # already handed out to another caller
        ((count,),) = await fetch(conn, "chord_add", params)
        expected = stored_size if stored_size is not None else size
        if expected is None or count < expected:
            return None
        return [bytes(blob) for (blob,) in await fetch(conn, "chord_take", params)]


def _table_names(options: Mapping[str, Any], task_schema: str | None) -> TableNames:
    """Celery's ``database_table_names`` and the ``group`` key of ``database_table_schemas``."""
    names = options.get("database_table_names") or {}
    schemas = options.get("database_table_schemas") or {}
    if not isinstance(names, Mapping):
        raise ImproperlyConfigured(f"database_table_names must be a mapping: {names!r}")
    group_schema = schemas.get("group") if isinstance(schemas, Mapping) else None
    return TableNames(names, task_schema, str(group_schema) if group_schema else task_schema)
