"""Embedded SQLite result backend (``sqlite:///rel.db``, ``sqlite:////abs.db``, ``sqlite://``).

Uses the stdlib ``sqlite3`` module, usually on the same file as the SQLite
transport (its tables are prefixed ``celeriac_result``/``celeriac_group``/
``celeriac_chord``). Each instance owns one connection living in a dedicated
single-thread executor, so the event loop never blocks on the database.

``wait()`` needs no busy loop: writers in this process wake waiters directly, and
one poller task per instance notices commits from other processes through
``PRAGMA data_version`` (a cheap counter read), polling from 1 ms up to a cap.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from celeriac.backends.base import ChordPart, Meta
from celeriac.engines.sqlite.connection import enable_wal, write_transaction
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import Serializer
from celeriac.states import READY_STATES

__all__ = ["DEFAULT_DATABASE", "SQLiteBackend", "sqlite_path_from_url"]

DEFAULT_DATABASE = "celeriac.sqlite"
"""File used by a bare ``sqlite://`` URL, relative to the working directory."""

_T = TypeVar("_T")
_log = logging.getLogger(__name__)
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-variable limit
_SWEEP_LIMIT = 1000  # expired rows removed per opportunistic sweep, to keep store() fast
_READY = tuple(sorted(READY_STATES))

_SCHEMA = """
CREATE TABLE IF NOT EXISTS celeriac_result (
    task_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    meta BLOB NOT NULL,
    stored_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS celeriac_result_expires
    ON celeriac_result (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS celeriac_group (
    group_id TEXT PRIMARY KEY,
    members TEXT NOT NULL,
    expires_at REAL
);
CREATE TABLE IF NOT EXISTS celeriac_chord (
    group_id TEXT PRIMARY KEY,
    done INTEGER NOT NULL DEFAULT 0,
    expires_at REAL,
    size INTEGER
);
CREATE TABLE IF NOT EXISTS celeriac_chord_part (
    group_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    part BLOB NOT NULL,
    PRIMARY KEY (group_id, idx)
);
"""

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_EXPIRING = (
    ("celeriac_result", "task_id"),
    ("celeriac_group", "group_id"),
    ("celeriac_chord", "group_id"),
)

# Backends open in this process, by database file, so a writer can wake local waiters
# at once instead of letting them find the change on their next poll.
_local: dict[str, weakref.WeakSet[SQLiteBackend]] = {}
_local_lock = threading.Lock()


def sqlite_path_from_url(url: str) -> str:
    """Database path of a SQLAlchemy-style URL: ``sqlite:///rel.db`` is relative,
    ``sqlite:////abs.db`` absolute, bare ``sqlite://`` is ``./celeriac.sqlite``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        raise ImproperlyConfigured(f"not a sqlite:// URL: {url!r}")
    if parts.netloc:
        raise ImproperlyConfigured(f"sqlite URL takes no host, use sqlite:///path: {url!r}")
    path = unquote(parts.path)
    if not path or path == "/":
        return DEFAULT_DATABASE
    return path[1:]


def _chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """Slices of at most ``_CHUNK`` items."""
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _marks(count: int) -> str:
    """``?,?,?`` for an IN list."""
    return ",".join("?" * count)


_write = write_transaction


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
        if expires is not None and expires < 0:
            raise ImproperlyConfigured(f"result_expires must not be negative: {expires!r}")
        opts = options or {}
        self.url = url
        self.path = sqlite_path_from_url(url)
        self._serializer = serializer
        self._expires = expires or None
        self._busy_timeout = float(opts.get("busy_timeout", 30.0))
        self._sweep_interval = float(opts.get("sweep_interval", 30.0))
        self._poll_min = 0.001
        self._poll_max = max(self._poll_min, float(opts.get("poll_interval_max", 0.01)))
        self._key = os.path.realpath(self.path)
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Touched only from the executor thread.
        self._conn: sqlite3.Connection | None = None
        self._last_sweep = 0.0
        self._data_version: int | None = None
        # Touched only from the event loop.
        self._waiters: dict[str, set[asyncio.Future[bytes]]] = {}
        self._unchecked: set[str] = set()
        self._seen: dict[str, float] = {}
        self._kick = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None

    # -- plumbing -----------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """Run ``fn`` on the connection's thread (connecting first if needed)."""
        if self._executor is None:
            await self.connect()
        assert self._executor is not None and self._loop is not None
        return await self._loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def _db(self) -> sqlite3.Connection:
        """The connection; only valid on the executor thread."""
        if self._conn is None:
            raise ConnectionError("SQLite result backend is closed")
        return self._conn

    def _expires_at(self, now: float) -> float | None:
        """Epoch time at which something written at ``now`` expires."""
        return None if self._expires is None else now + self._expires

    def _decode(self, blob: bytes) -> Meta:
        """Decode a stored document into a fresh dict."""
        meta: Meta = self._serializer.loads(blob)
        return meta

    async def connect(self) -> None:
        """Open the connection on its own thread and create the tables; idempotent."""
        if self._executor is not None:
            return
        self._loop = asyncio.get_running_loop()
        # Set before awaiting: later calls queue behind _open on the single thread.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="celeriac-sqlite-backend")
        try:
            await self._loop.run_in_executor(self._executor, self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        with _local_lock:
            _local.setdefault(self._key, weakref.WeakSet()).add(self)

    def _open(self) -> None:
        """Connect, switch to WAL and create the schema (executor thread)."""
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            with _write(conn):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                _add_chord_size_column(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        enable_wal(conn, self._busy_timeout)

    async def close(self) -> None:
        """Stop polling, fail pending waits with ConnectionError, close the connection."""
        executor, self._executor = self._executor, None
        if executor is None or self._loop is None:
            return
        with _local_lock:
            peers = _local.get(self._key)
            if peers is not None:
                peers.discard(self)
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
            self._poller = None
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(ConnectionError("result backend closed"))
        self._waiters.clear()
        await self._loop.run_in_executor(executor, self._close_conn)
        executor.shutdown(wait=False)

    def _close_conn(self) -> None:
        """Close the connection (executor thread)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
        await self._call(self._store_rows, rows, now)
        ready = [row[0] for row in rows if row[1] in READY_STATES]
        if ready:
            _notify_local(self._key, ready)

    def _store_rows(
        self, rows: list[tuple[str, str, bytes, float, float | None]], now: float
    ) -> None:
        """Upsert rows, sweeping some expired ones now and then (executor thread)."""
        conn = self._db()
        with _write(conn):
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
        found = await self._call(self._select_rows, list(dict.fromkeys(task_ids)), time.time())
        return [
            None if task_id not in found else self._decode(found[task_id][1])
            for task_id in task_ids
        ]

    def _select_rows(self, task_ids: list[str], now: float) -> dict[str, tuple[str, bytes, float]]:
        """Live rows by id: (status, meta blob, stored_at) (executor thread)."""
        conn = self._db()
        found: dict[str, tuple[str, bytes, float]] = {}
        for chunk in _chunks(task_ids):
            cursor = conn.execute(
                "SELECT task_id, status, meta, stored_at FROM celeriac_result"
                f" WHERE task_id IN ({_marks(len(chunk))}) AND {_LIVE}",
                (*chunk, now),
            )
            for task_id, status, blob, stored_at in cursor:
                found[task_id] = (status, blob, stored_at)
        return found

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        if task_ids:
            await self._call(self._delete_rows, list(task_ids))

    def _delete_rows(self, task_ids: list[str]) -> None:
        """Delete result rows by id (executor thread)."""
        conn = self._db()
        with _write(conn):
            for chunk in _chunks(task_ids):
                conn.execute(
                    f"DELETE FROM celeriac_result WHERE task_id IN ({_marks(len(chunk))})", chunk
                )

    async def cleanup(self) -> int:
        """Delete expired documents, groups and chord states; return how many."""
        return await self._call(self._cleanup, time.time())

    def _cleanup(self, now: float) -> int:
        """Delete every expired row (executor thread)."""
        with _write(self._db()) as conn:
            return _delete_expired(conn, now, -1)

    # -- waiting ------------------------------------------------------------------

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return once a ready document is stored, or the latest document at timeout."""
        doc = (await self.get([task_id]))[0]
        if (doc is not None and doc.get("status") in READY_STATES) or (
            timeout is not None and timeout <= 0
        ):
            return doc
        assert self._loop is not None
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._waiters.setdefault(task_id, set()).add(future)
        # Checked on the next poll whatever data_version says: covers a write that
        # landed between the get() above and this registration.
        self._unchecked.add(task_id)
        self._kick.set()
        if self._poller is None or self._poller.done():
            self._poller = self._loop.create_task(self._poll_loop())
        try:
            async with asyncio.timeout(timeout):
                blob = await future
        except TimeoutError:
            return (await self.get([task_id]))[0]
        finally:
            self._unregister(task_id, future)
        return self._decode(blob)

    def _unregister(self, task_id: str, future: asyncio.Future[bytes]) -> None:
        """Forget a finished waiter."""
        futures = self._waiters.get(task_id)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self._waiters[task_id]
        if task_id not in self._waiters:
            self._seen.pop(task_id, None)

    def _wake_local(self, task_ids: list[str]) -> None:
        """Another writer in this process stored these ready ids (event loop thread)."""
        hit = [task_id for task_id in task_ids if task_id in self._waiters]
        if hit:
            self._unchecked.update(hit)
            self._kick.set()

    def _notify_threadsafe(self, task_ids: list[str]) -> None:
        """Schedule ``_wake_local`` on this instance's loop, from any thread."""
        loop = self._loop
        # Reading the dict's size from another thread is a benign race: a missed
        # wake-up is still caught by the next poll.
        if loop is None or not self._waiters:
            return
        try:
            loop.call_soon_threadsafe(self._wake_local, task_ids)
        except RuntimeError:
            pass  # that loop is closed; nobody is waiting there

    async def _poll_loop(self) -> None:
        """While anyone waits: look for new ready documents, backing off 1 ms -> cap."""
        interval = self._poll_min
        while self._waiters:
            self._kick.clear()
            forced = [task_id for task_id in self._unchecked if task_id in self._waiters]
            self._unchecked.clear()
            try:
                rows = await self._call(self._poll, list(self._waiters), forced)
            except Exception as exc:  # a dead poller would leave every waiter hanging
                _log.warning("result backend poll failed, retrying: %s", exc)
                self._unchecked.update(forced)
                forced, rows = [], {}
            active = self._dispatch(rows)
            interval = self._poll_min if forced or active else min(interval * 2, self._poll_max)
            try:
                async with asyncio.timeout(interval):
                    await self._kick.wait()
            except TimeoutError:
                pass

    def _poll(self, waited: list[str], forced: list[str]) -> dict[str, tuple[str, bytes, float]]:
        """Rows of waited ids if the database changed, else of ``forced`` (executor thread)."""
        (version,) = self._db().execute("PRAGMA data_version").fetchone()
        changed = version != self._data_version
        ids = waited if changed else forced
        rows = self._select_rows(ids, time.time()) if ids else {}
        self._data_version = version  # only once the change was really looked at
        return rows

    def _dispatch(self, rows: dict[str, tuple[str, bytes, float]]) -> bool:
        """Resolve waiters of ready rows; True if any waited document changed."""
        active = False
        for task_id, (status, blob, stored_at) in rows.items():
            if self._seen.get(task_id) != stored_at:
                active = True
                self._seen[task_id] = stored_at
            if status in READY_STATES:
                for future in self._waiters.pop(task_id, ()):
                    if not future.done():
                        future.set_result(blob)
                self._seen.pop(task_id, None)
        return active

    # -- groups and chords --------------------------------------------------------

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember a group's member ids, with the result expiry."""
        row = (group_id, json.dumps(list(task_ids)), self._expires_at(time.time()))
        await self._call(
            self._write_one, "INSERT OR REPLACE INTO celeriac_group VALUES (?, ?, ?)", row
        )

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved, unexpired group, or None."""
        sql = f"SELECT members FROM celeriac_group WHERE group_id = ? AND {_LIVE}"
        members = await self._call(self._read_one, sql, (group_id, time.time()))
        return None if members is None else list(json.loads(members))

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        sql = "DELETE FROM celeriac_group WHERE group_id = ?"
        await self._call(self._write_one, sql, (group_id,))

    def _write_one(self, sql: str, params: Sequence[Any]) -> None:
        """Run one statement in its own write transaction (executor thread)."""
        with _write(self._db()) as conn:
            conn.execute(sql, params)

    def _read_one(self, sql: str, params: Sequence[Any]) -> Any:
        """First column of the first row, or None (executor thread)."""
        row = self._db().execute(sql, params).fetchone()
        return None if row is None else row[0]

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Record the number of header parts chord ``group_id`` waits for."""
        sql = (
            "INSERT INTO celeriac_chord (group_id, done, expires_at, size) VALUES (?, 0, ?, ?)"
            " ON CONFLICT (group_id) DO UPDATE SET"
            " done = 0, expires_at = excluded.expires_at, size = excluded.size"
        )
        await self._call(self._write_one, sql, (group_id, self._expires_at(time.time()), size))

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        """Record a header part; the caller that completes the chord gets all parts."""
        blob = self._serializer.dumps(list(part))
        now = time.time()
        blobs = await self._call(
            self._chord_part, group_id, index, blob, size, now, self._expires_at(now)
        )
        if blobs is None:
            return None
        parts: list[ChordPart] = []
        for item in blobs:
            task_id, state, result = self._serializer.loads(item)
            parts.append((task_id, state, result))
        return parts

    def _chord_part(
        self,
        group_id: str,
        index: int,
        blob: bytes,
        size: int | None,
        now: float,
        expires_at: float | None,
    ) -> list[bytes] | None:
        """Add a part and claim completion, in one write transaction (executor thread)."""
        with _write(self._db()) as conn:
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
