"""Waiting for results in PostgreSQL: LISTEN/NOTIFY first, polling as the safety net.

Writers NOTIFY a channel, in the same statement (so the same transaction) that stores
ready documents, with a JSON list of their task ids as the payload. A
:class:`ResultWatcher` keeps one dedicated psycopg connection LISTENing while anyone
waits (and for ``idle`` seconds after), and one checker task that reads the documents of
notified ids that somebody here waits for and resolves their waiters.

The checker also polls every waited id now and then, so nothing is lost when the
listening connection breaks (a NOTIFY sent while nobody listens is gone): every
``safety_interval`` seconds while listening, and with a growing interval (from 50 ms to
``poll_interval``) while the listener is down. After each (re)connection it checks every
waited id once, since notifications may have been missed in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence

from celeriac.exceptions import MissingDependency

try:
    import psycopg
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL result backend: pip install 'celeriac[sql]'") from exc

__all__ = ["ReadyFetcher", "ResultWatcher", "notify_payloads"]

_log = logging.getLogger(__name__)

ReadyFetcher = Callable[[Sequence[str]], Awaitable[dict[str, bytes]]]
"""Reads the given ids; returns the encoded documents of those in a ready state."""

_PAYLOAD_MAX = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
_POLL_MIN = 0.05


def notify_payloads(task_ids: Sequence[str]) -> list[str]:
    """JSON lists of ``task_ids``, each small enough for one NOTIFY payload.

    An id too long to fit alone is left out (its waiters find it by polling).
    """
    payloads: list[str] = []
    batch: list[str] = []
    size = 2
    for task_id in task_ids:
        cost = len(json.dumps(task_id).encode()) + 1
        if cost + 2 > _PAYLOAD_MAX:
            continue
        if size + cost > _PAYLOAD_MAX:
            payloads.append(_compact(batch))
            batch, size = [], 2
        batch.append(task_id)
        size += cost
    if batch:
        payloads.append(_compact(batch))
    return payloads


def _compact(task_ids: list[str]) -> str:
    """``["a","b"]``: the size counted by :func:`notify_payloads`."""
    return json.dumps(task_ids, separators=(",", ":"))


class ResultWatcher:
    """Resolves ``wait()`` calls of one backend instance (one event loop)."""

    def __init__(
        self,
        fetch: ReadyFetcher,
        conninfo: str,
        channel: str,
        *,
        listen: bool = True,
        poll_interval: float = 1.0,
        safety_interval: float = 5.0,
        idle: float = 30.0,
    ) -> None:
        self._fetch = fetch
        self._conninfo = conninfo
        self._channel = channel
        self._listen_enabled = listen
        self._poll_max = max(poll_interval, _POLL_MIN)
        self._safety = max(safety_interval, self._poll_max)
        self._idle = idle
        self._waiters: dict[str, set[asyncio.Future[bytes]]] = {}
        self._due: set[str] = set()
        self._kick = asyncio.Event()
        self._settled = asyncio.Event()  # the listener connected, or failed to
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether a LISTEN connection is up right now."""
        return self._listening

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """The ready document of ``task_id`` once stored, or None at ``timeout``."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(task_id, set()).add(future)
        try:
            async with asyncio.timeout(timeout):
                self._start()
                await self._settled.wait()  # LISTEN is on (or off for good) before we check
                self._due.add(task_id)  # covers a store that landed before LISTEN was on
                self._kick.set()
                return await future
        except TimeoutError:
            return None
        finally:
            futures = self._waiters.get(task_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiters[task_id]

    async def close(self) -> None:
        """Stop both tasks and fail pending waits with ConnectionError."""
        tasks = [task for task in (self._listener, self._checker) if task is not None]
        self._listener = self._checker = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for futures in self._waiters.values():
            for future in futures:
                if not future.done():
                    future.set_exception(ConnectionError("result backend closed"))
        self._waiters.clear()

    def _start(self) -> None:
        """Start the checker, and the listener unless it runs (or is switched off)."""
        loop = asyncio.get_running_loop()
        if self._checker is None or self._checker.done():
            self._checker = loop.create_task(self._check_loop())
        if not self._listen_enabled:
            self._settled.set()
        elif self._listener is None or self._listener.done():
            self._settled.clear()
            self._listener = loop.create_task(self._listen_loop())

    # -- listening ------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        """Keep a LISTEN connection while anyone waits; reconnect with backoff."""
        backoff = 0.1
        while True:
            failed = False
            try:
                await self._listen_once()
            except (psycopg.Error, OSError) as exc:
                failed = True
                _log.warning("result backend: LISTEN connection failed (%s); polling", exc)
            finally:
                self._listening = False
                self._settled.set()  # waiters go on by polling meanwhile
                self._kick.set()
            if not self._waiters:
                return  # idle (or failed with nobody waiting); the next wait() starts anew
            if failed:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            else:
                backoff = 0.1  # a waiter came while closing: listen again at once

    async def _listen_once(self) -> None:
        """One connection's life: LISTEN, recheck everything, then follow notifications.

        Returns once nobody has waited for ``idle`` seconds.
        """
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name="celeriac-listen", connect_timeout=10
        )
        async with conn:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._listening = True
            self._settled.set()
            self._due.update(self._waiters)  # anything notified while nobody listened
            self._kick.set()
            quiet = 0.0
            while quiet < self._idle:
                async for notify in conn.notifies(timeout=1.0):
                    self._on_notify(notify.payload)
                quiet = 0.0 if self._waiters else quiet + 1.0

    def _on_notify(self, payload: str) -> None:
        """Queue the notified ids that somebody here waits for."""
        try:
            task_ids = json.loads(payload)
        except ValueError:
            return  # not ours
        if not isinstance(task_ids, list):
            return
        hit = [tid for tid in task_ids if isinstance(tid, str) and tid in self._waiters]
        if hit:
            self._due.update(hit)
            self._kick.set()

    # -- checking -------------------------------------------------------------------

    async def _check_loop(self) -> None:
        """Read notified ids at once, and every waited id on the polling schedule."""
        loop = asyncio.get_running_loop()
        interval, last_poll = _POLL_MIN, loop.time()
        while True:
            if not self._waiters:  # sleep until somebody waits, then start polling afresh
                await self._kick.wait()
                interval, last_poll = _POLL_MIN, loop.time()
            self._kick.clear()
            poll = loop.time() >= last_poll + self._gap(interval)
            ids = list(self._waiters) if poll else [t for t in self._due if t in self._waiters]
            self._due.difference_update(ids)
            if ids:
                try:
                    self._resolve(await self._fetch(ids))
                except Exception as exc:  # a dead checker would leave every waiter hanging
                    _log.warning("result backend: checking results failed (%s); retrying", exc)
                    self._due.update(ids)
                    await asyncio.sleep(interval)
            if poll:
                interval, last_poll = min(interval * 2, self._poll_max), loop.time()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(last_poll + self._gap(interval) - loop.time(), 0)):
                    await self._kick.wait()

    def _gap(self, interval: float) -> float:
        """Seconds between two polls of every waited id."""
        return self._safety if self._listening else interval

    def _resolve(self, ready: dict[str, bytes]) -> None:
        """Hand ready documents to their waiters."""
        for task_id, blob in ready.items():
            for future in self._waiters.pop(task_id, ()):
                if not future.done():
                    future.set_result(blob)
