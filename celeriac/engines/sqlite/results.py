"""Embedded SQLite result backend (``sqlite:///rel.db``, ``sqlite:////abs.db``, ``sqlite://``).

Uses the stdlib ``sqlite3`` module, usually on the same file as the SQLite
transport (its tables are prefixed ``celeriac_result``/``celeriac_group``/
``celeriac_chord``). Each instance owns one
:class:`~celeriac.engines.sqlite.connection.SQLiteFile`: a connection on a thread of
its own, so the event loop never blocks on the database.

``wait()`` needs no busy loop: writers in this process wake waiters directly, and
one :class:`~celeriac.backends.waiting.PollLoop` per instance notices commits from other
processes through ``PRAGMA data_version`` (a cheap counter read), polling from 1 ms up
to a cap.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from celeriac.backends.base import ChordPart, Meta
from celeriac.backends.waiting import PollLoop, Waiters
from celeriac.engines.sqlite.connection import SQLiteFile, sqlite_path, write_transaction
from celeriac.protocol.serializers import Serializer
from celeriac.states import READY_STATES

__all__ = ["SQLiteBackend"]

_T = TypeVar("_T")
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-variable limit
_SWEEP_LIMIT = 1000  # expired rows removed per opportunistic sweep, to keep store() fast

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS celeriac_result (
        task_id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        meta BLOB NOT NULL,
        stored_at REAL NOT NULL,
        expires_at REAL)""",
    """CREATE INDEX IF NOT EXISTS celeriac_result_expires
        ON celeriac_result (expires_at) WHERE expires_at IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS celeriac_group (
        group_id TEXT PRIMARY KEY,
        members TEXT NOT NULL,
        expires_at REAL)""",
    """CREATE TABLE IF NOT EXISTS celeriac_chord (
        group_id TEXT PRIMARY KEY,
        done INTEGER NOT NULL DEFAULT 0,
        expires_at REAL,
        size INTEGER)""",
    """CREATE TABLE IF NOT EXISTS celeriac_chord_part (
        group_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        part BLOB NOT NULL,
        PRIMARY KEY (group_id, idx))""",
)

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_EXPIRING = (
    ("celeriac_result", "task_id"),
    ("celeriac_group", "group_id"),
    ("celeriac_chord", "group_id"),
)
_Rows = dict[str, tuple[str, bytes, float]]  # task id -> (status, meta blob, stored_at)

# Backends made in this process, by database file, so a writer can wake local waiters
# at once instead of letting them find the change on their next poll.
_local: dict[str, weakref.WeakSet[SQLiteBackend]] = {}
_local_lock = threading.Lock()


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """Slices of at most ``_CHUNK`` items."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(count: int) -> str:
    """``?,?,?`` for an IN list."""
    return ",".join("?" * count)


def _delete_expired(conn: sqlite3.Connection, now: float, limit: int) -> int:
    """Delete up to ``limit`` expired rows per table (negative: all); return how many."""
    # Chord parts carry no expiry of their own: they go with their chord's row.
    conn.execute(
        "DELETE FROM celeriac_chord_part WHERE group_id IN"
        " (SELECT group_id FROM celeriac_chord WHERE expires_at <= ? LIMIT ?)",
        (now, limit),
    )
    deleted = 0
    for table, key in _EXPIRING:
        deleted += conn.execute(
            f"DELETE FROM {table} WHERE {key} IN"
            f" (SELECT {key} FROM {table} WHERE expires_at <= ? LIMIT ?)",
            (now, limit),
        ).rowcount
    return deleted


class SQLiteBackend:
    """Result backend in an SQLite file, shared by every process that opens it.

    ``expires`` is Celery's ``result_expires`` in seconds; None or 0 keeps documents
    until forgotten. Options: ``busy_timeout`` (s, default 30), ``sweep_interval``
    (s between opportunistic deletions of expired rows on store, default 30) and
    ``poll_interval_max`` (s, the cap of the cross-process poll backoff, default 0.01: a waiting
    client checks ``PRAGMA data_version`` that often, which costs next to nothing).
    Unknown options are ignored, so shared transport options can be passed through.
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
        opts = options or {}
        self.url = url
        self.path = sqlite_path(url)
        self._serializer = serializer
        self._expires = expires or None
        self._sweep_interval = float(opts.get("sweep_interval", 30.0))
        self._file = SQLiteFile(
            self.path,
            busy_timeout=float(opts.get("busy_timeout", 30.0)),
            schema=_SCHEMA,
            what="result backend",
            upgrade=_add_chord_size_column,
        )
        # Touched only on the file's thread.
        self._last_sweep = 0.0
        self._data_version: int | None = None
        # Touched only from the event loop that waits.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: Waiters[bytes] = Waiters()
        self._unchecked: set[str] = set()
        self._seen: dict[str, float] = {}
        self._poller = PollLoop(
            self._poll_once,
            lambda: bool(self._waiters),
            first=0.001,
            cap=max(0.001, float(opts.get("poll_interval_max", 0.01))),
            what="SQLite result backend",
        )
        self._key = str(self.path.resolve())
        with _local_lock:
            _local.setdefault(self._key, weakref.WeakSet()).add(self)

    def _expires_at(self, now: float) -> float | None:
        """Epoch time at which something written at ``now`` expires."""
        return None if self._expires is None else now + self._expires

    def _decode(self, blob: bytes) -> Meta:
        """Decode a stored document into a fresh dict."""
        meta: Meta = self._serializer.loads(blob)
        return meta

    async def connect(self) -> None:
        """Open the file on its own thread and create the tables; idempotent."""
        await self._file.open()

    async def close(self) -> None:
        """Stop polling, fail pending waits with ConnectionError, close the file."""
        await self._poller.stop()
        self._waiters.fail_all(ConnectionError("result backend closed"))
        self._unchecked.clear()
        self._seen.clear()
        await self._file.close()

    # -- documents ----------------------------------------------------------------

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Write documents in one transaction (later ones win); wake local waiters."""
        if not items:
            return
        now = time.time()
        expires_at = self._expires_at(now)
        rows = [
            (task_id, str(meta.get("status")), self._serializer.dumps(meta), now, expires_at)
            for task_id, meta in items
        ]
        await self._file.call(self._store_rows, rows, now)
        ready = [row[0] for row in rows if row[1] in READY_STATES]
        if ready:
            _notify_local(self._key, ready)

    def _store_rows(
        self,
        conn: sqlite3.Connection,
        rows: list[tuple[str, str, bytes, float, float | None]],
        now: float,
    ) -> None:
        """Upsert rows, sweeping some expired ones now and then (file thread)."""
        with write_transaction(conn):
            conn.executemany(
                "INSERT OR REPLACE INTO celeriac_result"
                " (task_id, status, meta, stored_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            if now - self._last_sweep >= self._sweep_interval:
                self._last_sweep = now
                _delete_expired(conn, now, _SWEEP_LIMIT)

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Documents aligned with ``task_ids``; None for unknown or expired ones."""
        if not task_ids:
            return []
        found = await self._file.call(_select_rows, list(dict.fromkeys(task_ids)), time.time())
        return [
            None if task_id not in found else self._decode(found[task_id][1])
            for task_id in task_ids
        ]

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        if task_ids:
            await self._file.call(_delete_rows, list(task_ids))

    async def cleanup(self) -> int:
        """Delete expired documents, groups and chord states; return how many."""
        return await self._file.call(_cleanup, time.time())

    # -- waiting ------------------------------------------------------------------

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return once a ready document is stored, or the latest document at timeout."""
        doc = (await self.get([task_id]))[0]
        if (doc is not None and doc.get("status") in READY_STATES) or (
            timeout is not None and timeout <= 0
        ):
            return doc
        self._loop = asyncio.get_running_loop()
        try:
            blob = await self._waiters.wait(
                task_id, timeout, registered=lambda: self._check_soon(task_id)
            )
        finally:
            if task_id not in self._waiters:
                self._seen.pop(task_id, None)
        if blob is None:
            return (await self.get([task_id]))[0]
        return self._decode(blob)

    def _check_soon(self, task_id: str) -> None:
        """Look at ``task_id`` on the next poll whatever ``data_version`` says."""
        # Covers a write that landed between the get() in wait() and the registration.
        self._unchecked.add(task_id)
        self._poller.kick()

    def _wake_local(self, task_ids: list[str]) -> None:
        """Another writer in this process stored these ready ids (event loop thread)."""
        hit = [task_id for task_id in task_ids if task_id in self._waiters]
        if hit:
            self._unchecked.update(hit)
            self._poller.kick()

    def _notify_threadsafe(self, task_ids: list[str]) -> None:
        """Schedule ``_wake_local`` on this instance's loop, from any thread."""
        loop = self._loop
        # Reading the table's size from another thread is a benign race: a missed
        # wake-up is still caught by the next poll.
        if loop is None or not self._waiters:
            return
        try:
            loop.call_soon_threadsafe(self._wake_local, task_ids)
        except RuntimeError:
            pass  # that loop is closed; nobody is waiting there

    async def _poll_once(self) -> bool:
        """One poll for the PollLoop: True when a waited document changed."""
        forced = [task_id for task_id in self._unchecked if task_id in self._waiters]
        self._unchecked.clear()
        try:
            rows = await self._file.call(self._poll, list(self._waiters), forced)
        except Exception:
            self._unchecked.update(forced)  # look at them again on the next poll
            raise
        return self._dispatch(rows) or bool(forced)

    def _poll(self, conn: sqlite3.Connection, waited: list[str], forced: list[str]) -> _Rows:
        """Rows of waited ids if the database changed, else of ``forced`` (file thread)."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        changed = version != self._data_version
        ids = waited if changed else forced
        rows = _select_rows(conn, ids, time.time()) if ids else {}
        self._data_version = version  # only once the change was really looked at
        return rows

    def _dispatch(self, rows: _Rows) -> bool:
        """Resolve waiters of ready rows; True if any waited document changed."""
        active = False
        for task_id, (status, blob, stored_at) in rows.items():
            if self._seen.get(task_id) != stored_at:
                active = True
                self._seen[task_id] = stored_at
            if status in READY_STATES:
                self._waiters.resolve(task_id, blob)
                self._seen.pop(task_id, None)
        return active

    # -- groups and chords --------------------------------------------------------

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember a group's member ids, with the result expiry."""
        row = (group_id, json.dumps(list(task_ids)), self._expires_at(time.time()))
        await self._file.call(
            _write_one, "INSERT OR REPLACE INTO celeriac_group VALUES (?, ?, ?)", row
        )

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved, unexpired group, or None."""
        sql = f"SELECT members FROM celeriac_group WHERE group_id = ? AND {_LIVE}"
        members = await self._file.call(_read_one, sql, (group_id, time.time()))
        return None if members is None else list(json.loads(members))

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        sql = "DELETE FROM celeriac_group WHERE group_id = ?"
        await self._file.call(_write_one, sql, (group_id,))

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Record the number of header parts chord ``group_id`` waits for."""
        sql = (
            "INSERT INTO celeriac_chord (group_id, done, expires_at, size) VALUES (?, 0, ?, ?)"
            " ON CONFLICT (group_id) DO UPDATE SET"
            " done = 0, expires_at = excluded.expires_at, size = excluded.size"
        )
        await self._file.call(_write_one, sql, (group_id, self._expires_at(time.time()), size))

    async def add_to_chord(self, group_id: str, count: int) -> int:
        """Grow the chord's size by ``count``; the new size."""
        size: int = await self._file.call(_grow_chord, group_id, count)
        return size

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        """Record a header part; the caller that completes the chord gets all parts."""
        blob = self._serializer.dumps(list(part))
        now = time.time()
        blobs = await self._file.call(
            _chord_part, group_id, index, blob, size, now, self._expires_at(now)
        )
        if blobs is None:
            return None
        parts: list[ChordPart] = []
        for item in blobs:
            task_id, state, result = self._serializer.loads(item)
            parts.append((task_id, state, result))
        return parts


def _select_rows(conn: sqlite3.Connection, task_ids: list[str], now: float) -> _Rows:
    """Live rows by id: (status, meta blob, stored_at) (file thread)."""
    found: _Rows = {}
    for chunk in _chunks(task_ids):
        cursor = conn.execute(
            "SELECT task_id, status, meta, stored_at FROM celeriac_result"
            f" WHERE task_id IN ({_marks(len(chunk))}) AND {_LIVE}",
            (*chunk, now),
        )
        for task_id, status, blob, stored_at in cursor:
            found[task_id] = (status, blob, stored_at)
    return found


def _delete_rows(conn: sqlite3.Connection, task_ids: list[str]) -> None:
    """Delete result rows by id (file thread)."""
    with write_transaction(conn):
        for chunk in _chunks(task_ids):
            conn.execute(
                f"DELETE FROM celeriac_result WHERE task_id IN ({_marks(len(chunk))})", chunk
            )


def _cleanup(conn: sqlite3.Connection, now: float) -> int:
    """Delete every expired row (file thread)."""
    with write_transaction(conn):
        return _delete_expired(conn, now, -1)


def _write_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> None:
    """Run one statement in its own write transaction (file thread)."""
    with write_transaction(conn):
        conn.execute(sql, params)


def _read_one(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Any:
    """First column of the first row, or None (file thread)."""
    row = conn.execute(sql, params).fetchone()
    return None if row is None else row[0]


def _grow_chord(conn: sqlite3.Connection, group_id: str, count: int) -> int:
    """Add ``count`` to a chord's size; the new size (file thread)."""
    with write_transaction(conn):
        conn.execute(
            "UPDATE celeriac_chord SET size = COALESCE(size, 0) + ? WHERE group_id = ?",
            (count, group_id),
        )
        row = conn.execute(
            "SELECT size FROM celeriac_chord WHERE group_id = ?", (group_id,)
        ).fetchone()
    if row is None:
        raise KeyError(f"chord {group_id} has no size: it was never started or is done")
    return int(row[0])


def _chord_part(
    conn: sqlite3.Connection,
    group_id: str,
    index: int,
    blob: bytes,
    size: int | None,
    now: float,
    expires_at: float | None,
) -> list[bytes] | None:
    """Add a part and claim completion, in one write transaction (file thread)."""
    with write_transaction(conn):
        row = conn.execute(
            "SELECT done, expires_at, size FROM celeriac_chord WHERE group_id = ?",
            (group_id,),
        ).fetchone()
        if row is not None and row[1] is not None and row[1] <= now:
            conn.execute("DELETE FROM celeriac_chord_part WHERE group_id = ?", (group_id,))
            conn.execute("DELETE FROM celeriac_chord WHERE group_id = ?", (group_id,))
            row = None
        if row is not None and row[0]:
            return None  # already handed out to another caller
        conn.execute(
            "INSERT INTO celeriac_chord (group_id, done, expires_at) VALUES (?, 0, ?)"
            " ON CONFLICT (group_id) DO UPDATE SET expires_at = excluded.expires_at",
            (group_id, expires_at),
        )
        conn.execute(
            "INSERT OR IGNORE INTO celeriac_chord_part VALUES (?, ?, ?)",
            (group_id, index, blob),
        )
        expected = row[2] if row is not None and row[2] is not None else size
        (count,) = conn.execute(
            "SELECT COUNT(*) FROM celeriac_chord_part WHERE group_id = ?", (group_id,)
        ).fetchone()
        if expected is None or count < expected:
            return None
        parts = [
            bytes(part)
            for (part,) in conn.execute(
                "SELECT part FROM celeriac_chord_part WHERE group_id = ? ORDER BY idx",
                (group_id,),
            )
        ]
        conn.execute("DELETE FROM celeriac_chord_part WHERE group_id = ?", (group_id,))
        conn.execute("UPDATE celeriac_chord SET done = 1 WHERE group_id = ?", (group_id,))
        return parts


def _add_chord_size_column(conn: sqlite3.Connection) -> None:
    """Upgrade a database created before chord sizes were stored (inside a write)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(celeriac_chord)")}
    if "size" not in columns:
        conn.execute("ALTER TABLE celeriac_chord ADD COLUMN size INTEGER")


def _notify_local(key: str, task_ids: list[str]) -> None:
    """Tell every backend open on database ``key`` in this process about ready ids."""
    with _local_lock:
        peers = list(_local.get(key, ()))
    for peer in peers:
        peer._notify_threadsafe(task_ids)
