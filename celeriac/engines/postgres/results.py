"""PostgreSQL result backend (``db+postgresql://user@host/db``, also ``postgresql://``).

Tables (created on connect, in the ``schema`` option's schema if given; URLs and
options are described in :mod:`celeriac.engines.postgres.connection`):

* ``celeriac_taskmeta`` - ``task_id`` (primary key), ``status``, ``meta`` (the whole
  result document, encoded with the result serializer, as ``BYTEA``), ``stored_at`` and
  ``expires_at`` (epoch seconds; NULL keeps the row until forgotten).
* ``celeriac_groupmeta`` - ``group_id``, ``members`` (a JSON list of task ids), ``expires_at``.
* ``celeriac_chord`` - ``group_id``, ``size``, ``done``, ``expires_at``; and
  ``celeriac_chord_part`` - (``group_id``, ``idx``) -> ``part`` (one finished header task).

These are celeriac's own tables, not Celery's ``celery_taskmeta`` (which holds pickles).

:meth:`SQLBackend.store` writes a whole batch in ONE statement (``unnest`` of arrays into
``INSERT ... ON CONFLICT DO UPDATE``) that also ``pg_notify``\\ s the ids of ready
documents; :meth:`SQLBackend.wait` follows those notifications
(:mod:`celeriac.engines.postgres.listen`), polling as a safety net. A chord part is recorded
in one transaction that first locks the chord's row, so concurrent reports take turns
and exactly one of them sees the chord complete.

Options besides those of :mod:`celeriac.engines.postgres.connection`: ``listen`` (default
True; False waits by polling only), ``poll_interval`` (cap of the polling interval when not
listening, s, default 1), ``safety_interval`` (s between polls while listening, default 5),
``retry_interval_start`` and ``retry_backoff_max`` (first and longest wait before the LISTEN
connection is reopened, s, default 0.1 and 5), ``sweep_interval`` (s between deletions of
some expired rows on store, default 30). Unknown options are ignored.
"""

from __future__ import annotations

import json
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
from celeriac.engines.postgres.listen import LISTEN_RETRY, ResultWatcher, notify_payloads
from celeriac.exceptions import ImproperlyConfigured, MissingDependency
from celeriac.protocol.serializers import Serializer
from celeriac.retry import RetryPolicy
from celeriac.states import READY_STATES

try:
    from sqlalchemy import (
        Boolean,
        Column,
        Float,
        Integer,
        LargeBinary,
        MetaData,
        PrimaryKeyConstraint,
        String,
        Table,
        Text,
    )
    from sqlalchemy.ext.asyncio import AsyncConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL result backend: pip install 'celeriac[sql]'") from exc

__all__ = ["SQLBackend", "result_tables"]

_READY = sorted(READY_STATES)
_SWEEP_LIMIT = 1000  # expired rows removed per opportunistic sweep, to keep store() fast
_LIVE = "(expires_at IS NULL OR expires_at > :now)"


def result_tables(schema: str | None) -> MetaData:
    """The backend's tables, in ``schema``."""
    metadata = MetaData(schema=schema)
    Table(
        "celeriac_taskmeta",
        metadata,
        Column("task_id", String(255), primary_key=True),
        Column("status", String(50), nullable=False),
        Column("meta", LargeBinary, nullable=False),
        Column("stored_at", Float(53), nullable=False),
        Column("expires_at", Float(53), index=True),
    )
    Table(
        "celeriac_groupmeta",
        metadata,
        Column("group_id", String(255), primary_key=True),
        Column("members", Text, nullable=False),
        Column("expires_at", Float(53), index=True),
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


def _statements(t: Mapping[str, str]) -> dict[str, str]:
    """The backend's SQL, for the quoted table names in ``t``."""
    meta, group, chord, part = (t[k] for k in ("taskmeta", "groupmeta", "chord", "chord_part"))
    return {
        "store": (
            "WITH rows AS (SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:statuses AS text[]),"
            " CAST(:metas AS bytea[])) AS r(task_id, status, meta)),"
            f" up AS (INSERT INTO {meta} (task_id, status, meta, stored_at, expires_at)"
            " SELECT task_id, status, meta, :now, :expires_at FROM rows"
            " ON CONFLICT (task_id) DO UPDATE SET status = excluded.status,"
            " meta = excluded.meta, stored_at = excluded.stored_at,"
            " expires_at = excluded.expires_at RETURNING 1)"
            " SELECT pg_notify(:channel, p) FROM unnest(CAST(:payloads AS text[])) AS p"
        ),
        "get": f"SELECT task_id, status, meta FROM {meta} WHERE task_id = ANY(:ids) AND {_LIVE}",
        "forget": f"DELETE FROM {meta} WHERE task_id = ANY(:ids)",
        "save_group": (
            f"INSERT INTO {group} (group_id, members, expires_at) VALUES (:gid, :members, :exp)"
            " ON CONFLICT (group_id) DO UPDATE SET members = excluded.members,"
            " expires_at = excluded.expires_at"
        ),
        "restore_group": f"SELECT members FROM {group} WHERE group_id = :gid AND {_LIVE}",
        "forget_group": f"DELETE FROM {group} WHERE group_id = :gid",
        "set_chord_size": (
            f"WITH stale AS (DELETE FROM {part} WHERE group_id = :gid AND EXISTS"
            f" (SELECT 1 FROM {chord} WHERE group_id = :gid AND expires_at <= :now))"
            f" INSERT INTO {chord} (group_id, size, done, expires_at)"
            " VALUES (:gid, :size, false, :exp) ON CONFLICT (group_id) DO UPDATE SET"
            " size = excluded.size, done = false, expires_at = excluded.expires_at"
        ),
        # Creates the row if needed and locks it (the no-op update) for the transaction;
        # returns the row as it was before this call.
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
        **{
            f"sweep_{name}": (
                f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table}"
                " WHERE expires_at <= :now LIMIT :limit)"
            )
            for name, table, key in (
                ("taskmeta", meta, "task_id"),
                ("groupmeta", group, "group_id"),
                ("chord", chord, "group_id"),
            )
        },
    }


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
        if expires is not None and expires < 0:
            raise ImproperlyConfigured(f"result_expires must not be negative: {expires!r}")
        opts = dict(options or {})
        self.url = url
        self._settings: SQLSettings = parse_sql_settings(url, opts, role="task")
        self._serializer = serializer
        self._expires = expires or None
        self._tables = Tables(self._settings, result_tables(self._settings.schema), _statements)
        self._channel = channel_name("celeriac_result", self._settings.schema)
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
        """Create the engine and the tables; idempotent."""
        await self._tables.connect()

    async def close(self) -> None:
        """Stop waiting (pending waits raise ConnectionError) and release the engine."""
        await self._watcher.close()
        await self._tables.close()

    def _expires_at(self, now: float) -> float | None:
        """Epoch time at which something written at ``now`` expires."""
        return None if self._expires is None else now + self._expires

    def _decode(self, blob: bytes) -> Meta:
        """Decode a stored document into a fresh dict."""
        meta: Meta = self._serializer.loads(blob)
        return meta

    # -- documents ----------------------------------------------------------------

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Upsert a batch in one statement (later writes win) and notify ready ids."""
        if not items:
            return
        latest = dict(items)  # one row per id: a statement may not upsert a row twice
        statuses = [str(meta.get("status")) for meta in latest.values()]
        ready = [tid for tid, status in zip(latest, statuses, strict=True) if status in _READY]
        now = time.time()
        params = {
            "ids": list(latest),
            "statuses": statuses,
            "metas": [self._serializer.dumps(meta) for meta in latest.values()],
            "now": now,
            "expires_at": self._expires_at(now),
            "channel": self._channel,
            "payloads": notify_payloads(ready),
        }
        await self._tables.run("store", params)
        if now - self._last_sweep >= self._sweep_interval:
            self._last_sweep = now
            await self._delete_expired(now, _SWEEP_LIMIT)

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Documents aligned with ``task_ids``; None for unknown or expired ones."""
        if not task_ids:
            return []
        found = await self._select(task_ids)
        return [None if tid not in found else self._decode(found[tid][1]) for tid in task_ids]

    async def _select(self, task_ids: Sequence[str]) -> dict[str, tuple[str, bytes]]:
        """Live rows by id: (status, encoded document)."""
        params = {"ids": list(dict.fromkeys(task_ids)), "now": time.time()}
        rows = await self._tables.run("get", params)
        return {str(tid): (str(status), bytes(blob)) for tid, status, blob in rows}

    async def _fetch_ready(self, task_ids: Sequence[str]) -> dict[str, bytes]:
        """The encoded documents of the ids among ``task_ids`` that are ready."""
        found = await self._select(task_ids)
        return {tid: blob for tid, (status, blob) in found.items() if status in READY_STATES}

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        if task_ids:
            await self._tables.run("forget", {"ids": list(task_ids)})

    async def cleanup(self) -> int:
        """Delete expired documents, groups and chord states; return how many."""
        return await self._delete_expired(time.time(), None)

    async def _delete_expired(self, now: float, limit: int | None) -> int:
        """Delete up to ``limit`` (None: all) expired rows per table, in one transaction."""
        params = {"now": now, "limit": limit}
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
        blob = await self._watcher.wait(task_id, timeout)
        if blob is None:
            return (await self.get([task_id]))[0]
        return self._decode(blob)

    # -- groups and chords --------------------------------------------------------

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember a group's member ids, with the result expiry."""
        members = json.dumps(list(task_ids))
        params = {"gid": group_id, "members": members, "exp": self._expires_at(time.time())}
        await self._tables.run("save_group", params)

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved, unexpired group, or None."""
        rows = await self._tables.run("restore_group", {"gid": group_id, "now": time.time()})
        return None if not rows else [str(tid) for tid in json.loads(rows[0][0])]

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        await self._tables.run("forget_group", {"gid": group_id})

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Record the number of header parts chord ``group_id`` waits for."""
        now = time.time()
        params = {"gid": group_id, "size": size, "now": now, "exp": self._expires_at(now)}
        await self._tables.run("set_chord_size", params)

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
