"""The embedded SQLite transport: a broker in one file, safe for several processes on a host.

URLs follow SQLAlchemy: ``sqlite:///relative.db`` (relative to the current directory),
``sqlite:////abs/path.db`` (absolute), bare ``sqlite://`` is ``./celeriac.sqlite``.

Every instance owns one connection, used only from its own single worker thread, so the
event loop never waits on a database lock. The file is in WAL mode (readers never block
the writer). Each message row is in one of three states: ready, delayed (``not_before``
in the future; promoted when due, so no consumer ever holds it) or leased to a consumer.
Claiming happens inside ``BEGIN IMMEDIATE``, so two processes never get the same row.
Consumers heartbeat into ``celeriac_consumers``; the leases of one whose heartbeat
expired are handed out again, marked redelivered. A waiting fetch is woken at once by a
publish in the same process and, across processes, by one watcher thread per file that
polls for commits (``PRAGMA data_version``) with a short capped backoff.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from celeriac.engines.memory.broker import Doorbell, LeaseOptions
from celeriac.engines.sqlite.queue_store import Engine, MessageRow
from celeriac.exceptions import ImproperlyConfigured
from celeriac.transport.base import DeadLetter, Delivery, Outgoing, QueueSpec

__all__ = ["FileWatcher", "SQLiteTransport", "sqlite_path", "watcher_for"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_FILE = "celeriac.sqlite"


def sqlite_path(url: str) -> Path:
    """The database file a ``sqlite://`` URL names, made absolute against the cwd now."""
    scheme, sep, rest = url.partition("://")
    if scheme.lower() not in ("sqlite", "sqla+sqlite") or not sep:
        raise ImproperlyConfigured(f"not a sqlite:// URL: {url!r}")
    rest = rest.partition("?")[0]
    if rest in ("", "/"):
        return Path.cwd() / DEFAULT_FILE
    if not rest.startswith("/"):
        raise ImproperlyConfigured(
            f"sqlite URL {url!r} names a host; use sqlite:///relative.db or sqlite:////abs.db"
        )
    path = rest[1:]  # one slash separates the (empty) host from the path
    if path == ":memory:" or path.startswith("file:"):
        raise ImproperlyConfigured(
            f"{url!r}: an in-memory SQLite database cannot be shared; use memory:// instead"
        )
    return Path(path) if Path(path).is_absolute() else Path.cwd() / path


class FileWatcher:
    """Notices commits other processes make to one database file; rings :attr:`bell`.

    One per file per process. While at least one fetch waits, a daemon thread checks the
    file for commits: a ``stat`` of the WAL, then ``PRAGMA data_version`` on its own
    connection (it changes when another connection commits), after 1 ms at first, backing
    off to ``poll_interval``. With no fetch waiting the thread sleeps on a condition and
    costs nothing. Publishers in this process ring the bell themselves, without polling.
    """

    def __init__(self, path: Path, poll_interval: float) -> None:
        self.path = path
        self.poll_interval = poll_interval
        self.bell = Doorbell()
        self._cond = threading.Condition()
        self._waiting = 0
        self._restart = False
        self._thread: threading.Thread | None = None
        # Used only by the watcher thread:
        self._conn: sqlite3.Connection | None = None
        self._version: int | None = None
        self._signature: tuple[int, ...] = ()
        self._checked = float("-inf")

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Poll for outside commits while the block runs (a fetch is waiting)."""
        with self._cond:
            if self._waiting == 0:
                self._restart = True  # after an idle spell, check again quickly
            self._waiting += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"celeriac-sqlite-watch {self.path.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                self._waiting -= 1

    def _run(self) -> None:
        delay = _FIRST_POLL
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                if self._restart:
                    delay, self._restart = _FIRST_POLL, False
            time.sleep(delay)
            try:
                changed = self._changed()
            except Exception:  # never let the thread die: fetchers would only wake on timeouts
                log.exception("watching %s failed", self.path)
                changed = False
            if changed:
                delay = _FIRST_POLL
                self.bell.ring()
            else:
                delay = min(delay * 2, self.poll_interval)

    def _changed(self) -> bool:
        """True when the file changed since the last call (and on the first call)."""
        # A stat of the WAL and main file is far cheaper than a query; the query runs when
        # they look different and every _RECHECK seconds anyway, because a commit within
        # one coarse mtime tick that does not grow the WAL leaves the stat unchanged.
        signature = _stat_signature(self.path)
        now = time.monotonic()
        if signature == self._signature and now - self._checked < _RECHECK:
            return False
        self._signature, self._checked = signature, now
        try:
            self._conn = self._conn or sqlite3.connect(self.path, isolation_level=None)
            version = int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except sqlite3.Error as exc:  # e.g. busy during WAL recovery: try again later
            log.debug("watching %s: %s", self.path, exc)
            return False
        # The first read (version None) counts as a change: a commit may predate it.
        changed, self._version = version != self._version, version
        return changed


def _stat_signature(path: Path) -> tuple[int, ...]:
    signature: list[int] = []
    for name in (f"{path}-wal", str(path)):
        try:
            st = os.stat(name)
        except OSError:
            signature += (0, 0, 0)
        else:
            signature += (st.st_ino, st.st_size, st.st_mtime_ns)
    return tuple(signature)


_RECHECK = 0.1
_FIRST_POLL = 0.001
_WATCHERS: dict[tuple[int, str], FileWatcher] = {}
_WATCHERS_LOCK = threading.Lock()


def watcher_for(path: Path, poll_interval: float) -> FileWatcher:
    """The watcher of ``path`` in this process (a forked child gets its own)."""
    key = (os.getpid(), str(path))
    with _WATCHERS_LOCK:
        watcher = _WATCHERS.get(key)
        if watcher is None:
            watcher = _WATCHERS[key] = FileWatcher(path, poll_interval)
        watcher.poll_interval = min(watcher.poll_interval, poll_interval)
        return watcher


class SQLiteTransport:
    """A :class:`~celeriac.transport.base.Transport` over an SQLite file.

    Options (``broker_transport_options``): ``lease_timeout`` (30 s), ``heartbeat_interval``
    (lease_timeout / 3), ``poll_interval`` (longest sleep between cross-process change
    checks while idle, 0.01 s), ``busy_timeout`` (seconds a write waits for the lock, 10).
    """

    def __init__(self, url: str = "sqlite://", *, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._opts = LeaseOptions.from_options(options)
        self._busy_timeout = float((options or {}).get("busy_timeout", 10.0))
        self._consumer_id = uuid.uuid4().hex
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self._rotation = 0
        self._last_sweep = float("-inf")
        self._connect_lock = asyncio.Lock()
        self._closed = False
        self._watcher = watcher_for(self.path, self._opts.poll_interval)

    def __repr__(self) -> str:
        return f"<SQLiteTransport {self.path} consumer={self._consumer_id[:8]}>"

    async def connect(self) -> None:
        """Open the file in this instance's thread and create the schema; idempotent."""
        async with self._connect_lock:
            self._closed = False
            if self._engine is not None:
                return
            loop = asyncio.get_running_loop()
            executor = ThreadPoolExecutor(1, thread_name_prefix="celeriac-sqlite")
            engine = Engine(self.path, self._busy_timeout)
            try:
                await loop.run_in_executor(executor, engine.open)
            except BaseException:
                executor.shutdown(wait=False)
                raise
            self._loop, self._executor, self._engine = loop, executor, engine
            self._watcher.bell.subscribe(loop, self._wake)

    async def close(self) -> None:
        """Stop the heartbeat, requeue what this consumer still holds, close the file."""
        engine, executor, loop = self._engine, self._executor, self._loop
        if engine is None or executor is None or loop is None:
            return
        self._closed = True
        self._wake.set()  # a fetch waiting right now returns empty
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        self._watcher.bell.unsubscribe(loop, self._wake)
        self._engine = self._executor = None
        try:
            released = await loop.run_in_executor(executor, engine.release, self._consumer_id)
            if released:
                self._watcher.bell.ring()
        finally:
            await loop.run_in_executor(executor, engine.close)
            executor.shutdown(wait=False)

    async def _ready(self) -> tuple[asyncio.AbstractEventLoop, ThreadPoolExecutor, Engine]:
        if self._engine is None:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed")
            await self.connect()
        engine, executor, loop = self._engine, self._executor, self._loop
        assert engine is not None and executor is not None and loop is not None
        return loop, executor, engine

    async def _call(self, fn: Callable[[Engine], T]) -> T:
        """Run ``fn(engine)`` in this instance's database thread (connecting on first use)."""
        loop, executor, engine = await self._ready()
        return await loop.run_in_executor(executor, fn, engine)

    async def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Persist exchanges and bindings (idempotent); plain queues need nothing."""
        await self._call(lambda engine: engine.declare(queues))

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Route and insert ``messages`` in one transaction; unroutable ones are dropped."""
        if not messages:
            return
        unroutable = await self._call(lambda engine: engine.publish(messages, time.time()))
        self._watcher.bell.ring()
        if unroutable:
            log.warning("dropped %d unroutable message(s) (no queue bound)", unroutable)

    async def fetch(self, queues: Sequence[str], *, limit: int, timeout: float) -> list[Delivery]:
        """Lease up to ``limit`` due messages, waiting up to ``timeout`` s for one."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        names = list(dict.fromkeys(queues))
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._closed:
            self._wake.clear()
            rows, next_due = await self._fetch_once(names, limit)
            if rows:
                self._start_heartbeat()
                return [_delivery(row) for row in rows]
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self._wait(remaining, next_due)
        return []

    async def _fetch_once(
        self, names: list[str], limit: int
    ) -> tuple[list[MessageRow], float | None]:
        sweep = time.monotonic() - self._last_sweep >= self._opts.heartbeat_interval
        if sweep:
            self._last_sweep = time.monotonic()
        expires = time.time() + self._opts.lease_timeout
        claim = functools.partial(
            Engine.fetch,
            consumer=self._consumer_id,
            queues=self._rotated(names),
            limit=limit,
            expires=expires,
            sweep=sweep,
        )
        loop, executor, engine = await self._ready()
        future = loop.run_in_executor(executor, claim, engine)
        try:
            # Shielded: a claim that completes after our caller gave up is handed back.
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._give_back)
            raise
        rows, next_due, recovered = result
        if recovered:
            self._watcher.bell.ring()  # the sweep made deliveries of a dead consumer visible
        return rows, next_due

    def _give_back(self, future: asyncio.Future[tuple[list[MessageRow], Any, Any]]) -> None:
        if future.cancelled() or future.exception() is not None or not future.result()[0]:
            return
        ids = [row.id for row in future.result()[0]]
        engine, executor = self._engine, self._executor
        if engine is None or executor is None:
            return  # closing: close() releases every lease of this consumer
        try:
            executor.submit(engine.settle, self._consumer_id, ids, True)
        except RuntimeError:  # the executor shut down meanwhile; close() released them
            pass

    def _rotated(self, names: list[str]) -> list[str]:
        # Start each fetch at the next queue so no listed queue is starved.
        if not names:
            return names
        start = self._rotation % len(names)
        self._rotation += 1
        return names[start:] + names[:start]

    async def _wait(self, remaining: float, next_due: float | None) -> None:
        """Sleep until woken (a publish here, a commit elsewhere), something is due, the
        timeout ends or a sweep is due, whichever comes first."""
        budget = min(remaining, self._opts.heartbeat_interval)
        if next_due is not None:
            budget = min(budget, max(next_due - time.time(), 0.0))
        if budget <= 0:
            return
        with self._watcher.waiting():
            try:
                await asyncio.wait_for(self._wake.wait(), budget)
            except TimeoutError:
                pass

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat_forever(), name=f"{self!r} heartbeat")

    async def _beat_forever(self) -> None:
        while self._engine is not None:
            await asyncio.sleep(self._opts.heartbeat_interval)
            beat = functools.partial(
                Engine.beat,
                consumer=self._consumer_id,
                expires=time.time() + self._opts.lease_timeout,
            )
            try:
                recovered = await self._call(beat)
            except Exception:  # a locked or busy file: try again next interval
                log.exception("%r: heartbeat failed", self)
                continue
            self._last_sweep = time.monotonic()
            if recovered:
                self._watcher.bell.ring()

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete finished deliveries in one transaction (lost leases are ignored)."""
        ids = _ids(deliveries)
        if ids:
            await self._call(lambda e: e.settle(self._consumer_id, ids, False))

    async def reject(self, deliveries: Sequence[Delivery], *, requeue: bool) -> None:
        """Make deliveries visible again at once (redelivered) or drop them."""
        ids = _ids(deliveries)
        if ids:
            await self._call(lambda e: e.settle(self._consumer_id, ids, requeue))
            if requeue:
                self._watcher.bell.ring()

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a leased delivery to ``celeriac_dead`` with ``reason`` and the time."""
        ids = _ids([delivery])
        now = time.time()
        buried = bool(ids) and await self._call(
            lambda e: e.bury(self._consumer_id, ids[0], reason, now)
        )
        if not buried:
            log.warning("dead_letter: delivery %s is no longer leased here", delivery.tag)

    async def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        return await self._call(lambda e: e.list_dead(limit))

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on their original queues."""
        wanted = None if ids is None else [int(i) for i in ids if str(i).isdigit()]
        count = await self._call(lambda e: e.requeue_dead(wanted, time.time()))
        if count:
            self._watcher.bell.ring()
        return count

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting (unleased) messages in ``queues``, due or not; return how many."""
        return await self._call(lambda e: e.purge(queues))

    async def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Waiting (unleased) messages per queue, due or not."""
        return await self._call(lambda e: e.queue_sizes(queues))

    async def revoke(self, task_ids: Sequence[str], *, expires: float) -> None:
        """Persist revoked task ids until ``expires`` (epoch seconds)."""
        now = time.time()
        await self._call(lambda e: e.revoke(task_ids, expires, now))

    async def revoked(self) -> set[str]:
        """Task ids whose revoke has not expired."""
        now = time.time()
        return await self._call(lambda e: e.revoked(now))


def _ids(deliveries: Sequence[Delivery]) -> list[int]:
    return [int(d.tag) for d in deliveries if d.tag.isdigit()]


def _delivery(row: MessageRow) -> Delivery:
    return Delivery(
        envelope=row.envelope,
        queue=row.queue,
        tag=str(row.id),
        exchange=row.exchange,
        routing_key=row.routing_key,
        redelivered=row.redelivered,
    )
