"""Waiting for results in PostgreSQL: LISTEN/NOTIFY first, polling as the safety net.

Writers NOTIFY a channel in the transaction that stores ready documents, with a JSON list
of their task ids as the payload (the result table's triggers do it, for every writer). A
:class:`ResultWatcher` keeps one dedicated psycopg connection LISTENing while anyone
waits (and for ``idle`` seconds after), reconnecting with the backoff of its
:class:`~celeriac.retry.RetryPolicy` (from 0.1 s, doubling up to 5 s). The waiters are a
:class:`~celeriac.backends.waiting.Waiters` table; a
:class:`~celeriac.backends.waiting.PollLoop` runs the checks while anyone waits: kicked by
a notification or a new waiter, it reads the documents of the ids that are due (notified,
or just registered) and resolves their waiters.

The checks also read every waited id now and then, so nothing is lost when the
listening connection breaks (a NOTIFY sent while nobody listens is gone): every
``safety_interval`` seconds while listening, and at every check, at an interval growing
from 50 ms to ``poll_interval``, while the listener is down. After each (re)connection
every waited id is checked once, since notifications may have been missed in between.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from celeriac.backends.waiting import PollLoop, Waiters
from celeriac.exceptions import MissingDependency
from celeriac.retry import RetryPolicy

try:
    import psycopg
    from psycopg import sql
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("SQL result backend: pip install 'celeriac[sql]'") from exc

__all__ = ["LISTEN_RETRY", "ReadyFetcher", "ResultWatcher"]

_log = logging.getLogger(__name__)

ReadyFetcher = Callable[[Sequence[str]], Awaitable[dict[str, Any]]]
"""Reads the given ids; returns the documents of those in a ready state."""

_POLL_MIN = 0.05

LISTEN_RETRY = RetryPolicy(first=0.1, factor=2.0, max_delay=5.0, max_retries=None)
"""How the LISTEN connection is reopened: for ever, from 0.1 s, doubling up to 5 s."""


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
        retry: RetryPolicy = LISTEN_RETRY,
    ) -> None:
        self._fetch = fetch
        self._conninfo = conninfo
        self._channel = channel
        self._listen_enabled = listen
        self._safety = max(safety_interval, poll_interval, _POLL_MIN)
        self._idle = idle
        self._retry = retry
        self._waiters: Waiters[Any] = Waiters()
        self._due: set[str] = set()
        self._next_full = 0.0  # monotonic time of the next check of every waited id
        self._poller = PollLoop(
            self._check,
            lambda: bool(self._waiters),
            first=_POLL_MIN,
            cap=max(poll_interval, _POLL_MIN),
            what="result backend",
        )
        self._settled = asyncio.Event()  # the listener connected, or failed to
        self._listening = False
        self._listener: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Whether a LISTEN connection is up right now."""
        return self._listening

    async def wait(self, task_id: str, timeout: float | None) -> Any:
        """The ready document of ``task_id`` once stored, or None at ``timeout``."""
        return await self._waiters.wait(
            task_id, timeout, registered=lambda: self._check_soon(task_id)
        )

    def _check_soon(self, task_id: str) -> None:
        """Listen if not yet; check ``task_id`` now, or once the listener settles.

        Checking only after LISTEN is on covers a store that landed before it was; the
        listener checks every waited id when it connects, and every check is a full one
        while it is down.
        """
        if not self._listen_enabled:
            self._settled.set()
        elif self._listener is None or self._listener.done():
            self._settled.clear()
            self._listener = asyncio.get_running_loop().create_task(self._listen_loop())
        if self._settled.is_set():
            self._due.add(task_id)
            self._poller.kick()

    async def close(self) -> None:
        """Stop listening and checking, and fail pending waits with ConnectionError."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        await self._poller.stop()
        self._waiters.fail_all(ConnectionError("result backend closed"))

    # -- listening ------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        """Keep a LISTEN connection while anyone waits; reconnect with backoff."""
        backoff = self._retry.backoff()
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
                self._poller.kick()
            if not self._waiters:
                return  # idle (or failed with nobody waiting); the next wait() starts anew
            if failed:
                await backoff.sleep()
            else:
                backoff.reset()  # a waiter came while closing: listen again at once

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
            self._poller.kick()
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
            self._poller.kick()

    # -- checking -------------------------------------------------------------------

    async def _check(self) -> bool:
        """Read the due ids, or every waited id when listening is down or its turn came.

        Never reports a change: the safety net's interval keeps growing while anyone waits.
        """
        now = time.monotonic()
        if not self._listening or now >= self._next_full:
            ids = list(self._waiters)
            self._next_full = now + self._safety
        else:
            ids = [task_id for task_id in self._due if task_id in self._waiters]
        self._due.clear()  # what is not read now nobody waits for any more
        if ids:
            try:
                ready = await self._fetch(ids)
            except Exception:
                self._due.update(ids)  # checked again on the next round
                raise
            for task_id, document in ready.items():
                self._waiters.resolve(task_id, document)
        return False
