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
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from celeriac.engines.sqlite import queue_store
from celeriac.engines.sqlite.connection import SQLiteFile, sqlite_path
from celeriac.engines.sqlite.queue_store import MessageRow
from celeriac.retry import Backoff
from celeriac.transport.base import DeadLetter, Delivery, Outgoing, QueueSpec
from celeriac.transport.local import Doorbell, LeaseOptions, LocalConsumer

__all__ = ["FileWatcher", "SQLiteTransport", "watcher_for"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


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
        backoff = Backoff(_FIRST_POLL, 2.0, self.poll_interval)
        while True:
            with self._cond:
                while not self._waiting:
                    self._cond.wait()
                if self._restart:
                    self._restart = False
                    backoff.reset()
            backoff.max_delay = self.poll_interval  # a later transport may ask for less
            time.sleep(backoff.next())
            try:
                changed = self._changed()
            except Exception:  # never let the thread die: fetchers would only wake on timeouts
                log.exception("watching %s failed", self.path)
                changed = False
            if changed:
                backoff.reset()
                self.bell.ring()

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
        opts = LeaseOptions.from_options(options)
        busy_timeout = float((options or {}).get("busy_timeout", 10.0))
        self._file = SQLiteFile(
            self.path, busy_timeout=busy_timeout, schema=queue_store.SCHEMA, what="broker"
        )
        self._consumer = LocalConsumer(opts, beat=self._beat, label=f"SQLiteTransport {self.path}")
        self._watcher = watcher_for(self.path, opts.poll_interval)

    def __repr__(self) -> str:
        return repr(self._consumer)

    async def connect(self) -> None:
        """Open the file in this instance's thread and create the schema; idempotent."""
        await self._file.open()
        self._consumer.attach(self._watcher.bell)

    @property
    def consumer_id(self) -> str:
        """This transport's consumer, as its leases name it."""
        return self._consumer.id

    async def reclaim(self, consumer_id: str) -> int:
        """Requeue, as redelivered, what consumer ``consumer_id`` (known dead) leased."""
        count = int(await self._call(queue_store.release, consumer_id))
        if count:
            self._watcher.bell.ring()
        return count

    async def close(self) -> None:
        """Stop the heartbeat, requeue what this consumer still holds, close the file."""
        if not self._file.is_open:
            return
        await self._consumer.close()  # a fetch waiting right now returns empty
        try:
            if await self._file.call(queue_store.release, self._consumer.id):
                self._watcher.bell.ring()
        finally:
            await self._file.close()

    async def _call(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn(conn, ...)`` on this instance's database thread (connecting on first use)."""
        await self._ready()
        return await self._file.call(fn, *args, **kwargs)

    async def _ready(self) -> None:
        if not self._file.is_open:
            if self._consumer.closed:
                raise RuntimeError(f"{self!r} is closed")
            await self.connect()

    async def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Persist exchanges and bindings (idempotent); plain queues need nothing."""
        await self._call(queue_store.declare, queues)

    async def unbind(self, queues: Sequence[QueueSpec]) -> None:
        """Forget the bindings (and the waiting rows of auto-delete queues)."""
        if queues:
            await self._call(queue_store.unbind, queues)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Route and insert ``messages`` in one transaction; unroutable ones are dropped."""
        if not messages:
            return
        unroutable = await self._call(queue_store.publish, messages, time.time())
        self._watcher.bell.ring()
        if unroutable:
            log.warning("dropped %d unroutable message(s) (no queue bound)", unroutable)

    async def fetch(self, queues: Sequence[str], *, limit: int, timeout: float) -> list[Delivery]:
        """Lease up to ``limit`` due messages, waiting up to ``timeout`` s for one."""
        return await self._consumer.fetch(
            queues, limit, timeout, self._claim, idle=self._watcher.waiting
        )

    async def _claim(
        self, queues: list[str], limit: int, sweep: bool
    ) -> tuple[list[Delivery], float | None]:
        await self._ready()
        future = self._file.submit(
            queue_store.fetch,
            consumer=self._consumer.id,
            queues=queues,
            limit=limit,
            expires=time.time() + self._consumer.options.lease_timeout,
            sweep=sweep,
        )
        try:
            # Shielded: a claim that completes after our caller gave up is handed back.
            rows, next_due, recovered = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._give_back)
            raise
        if recovered:
            self._watcher.bell.ring()  # the sweep made deliveries of a dead consumer visible
        return [_delivery(row) for row in rows], next_due

    def _give_back(self, future: asyncio.Future[tuple[list[MessageRow], Any, Any]]) -> None:
        if future.cancelled() or future.exception() is not None or not future.result()[0]:
            return
        ids = [row.id for row in future.result()[0]]
        try:
            self._file.submit(queue_store.settle, self._consumer.id, ids, True)
        except RuntimeError:  # the file closed meanwhile; close() released every lease
            pass

    async def _beat(self) -> None:
        expires = time.time() + self._consumer.options.lease_timeout
        if await self._call(queue_store.beat, self._consumer.id, expires):
            self._watcher.bell.ring()

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Delete finished deliveries in one transaction (lost leases are ignored)."""
        ids = _ids(deliveries)
        if ids:
            await self._call(queue_store.settle, self._consumer.id, ids, False)

    async def reject(self, deliveries: Sequence[Delivery], *, requeue: bool) -> None:
        """Make deliveries visible again at once (redelivered) or drop them."""
        ids = _ids(deliveries)
        if ids:
            await self._call(queue_store.settle, self._consumer.id, ids, requeue)
            if requeue:
                self._watcher.bell.ring()

    async def defer(self, delivery: Delivery, not_before: float) -> None:
        """Make a leased row delayed until ``not_before``: one UPDATE, so it is acked too."""
        ids = _ids([delivery])
        moved = bool(ids) and await self._call(
            queue_store.defer, self._consumer.id, ids[0], not_before
        )
        if not moved:
            log.warning("defer: delivery %s is no longer leased here", delivery.tag)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a leased delivery to ``celeriac_dead`` with ``reason`` and the time."""
        ids = _ids([delivery])
        buried = bool(ids) and await self._call(
            queue_store.bury, self._consumer.id, ids[0], reason, time.time()
        )
        if not buried:
            log.warning("dead_letter: delivery %s is no longer leased here", delivery.tag)

    async def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first."""
        return await self._call(queue_store.list_dead, limit)

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters (all when ``ids`` is None) back on their original queues."""
        wanted = None if ids is None else [int(i) for i in ids if str(i).isdigit()]
        count = await self._call(queue_store.requeue_dead, wanted, time.time())
        if count:
            self._watcher.bell.ring()
        return count

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all when ``ids`` is None) for good; return how many."""
        wanted = None if ids is None else [int(i) for i in ids if str(i).isdigit()]
        return await self._call(queue_store.purge_dead, wanted)

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting (unleased) messages in ``queues``, due or not; return how many."""
        return await self._call(queue_store.purge, queues)

    async def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Waiting (unleased) messages per queue, due or not."""
        return await self._call(queue_store.queue_sizes, queues)

    async def revoke(self, task_ids: Sequence[str], *, expires: float) -> None:
        """Persist revoked task ids until ``expires`` (epoch seconds)."""
        await self._call(queue_store.revoke, task_ids, expires, time.time())

    async def revoked(self) -> set[str]:
        """Task ids whose revoke has not expired."""
        return await self._call(queue_store.revoked, time.time())


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
