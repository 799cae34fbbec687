"""The one toolkit for waiting on results: futures per task id, and the poll that backs off.

Every result backend waits the same way: a waiter registers a future under its task
id, the engine resolves every future of an id when a ready document for it turns up
(a notification, a message, a poll), and the waiter gives up at its timeout. The
engines differ only in how they learn that something is ready; that part is theirs.

* :class:`Waiters` is the table of futures per task id.
* :class:`PollLoop` runs an engine's ``poll`` while anyone waits, at once when
  kicked, otherwise at an interval that grows from ``first`` to ``cap`` while
  nothing changes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Generic, TypeVar

from celeriac.retry import Backoff

__all__ = ["PollLoop", "Waiters"]

T = TypeVar("T")

logger = logging.getLogger("celeriac.backends")


class Waiters(Generic[T]):
    """Futures per task id, resolved with a value of type ``T`` (a document, raw bytes…)."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[str, set[asyncio.Future[T]]] = {}

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._by_id

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._by_id))

    def add(self, task_id: str) -> asyncio.Future[T]:
        """A new future for ``task_id``, on the running loop."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._by_id.setdefault(task_id, set()).add(future)
        return future

    def discard(self, task_id: str, future: asyncio.Future[T]) -> bool:
        """Forget one future; True when nobody waits for ``task_id`` any more."""
        futures = self._by_id.get(task_id)
        if futures is not None:
            futures.discard(future)
            if futures:
                return False
            del self._by_id[task_id]
        return True

    def resolve(self, task_id: str, value: T) -> bool:
        """Resolve and forget every future of ``task_id``; True if there was one."""
        futures = self._by_id.pop(task_id, None)
        if not futures:
            return False
        for future in futures:
            if not future.done():
                future.set_result(value)
        return True

    def wake(self, task_id: str, value: T) -> bool:
        """Resolve the futures of ``task_id`` but keep the id registered (they wait again)."""
        futures = self._by_id.get(task_id)
        if not futures:
            return False
        for future in futures:
            if not future.done():
                future.set_result(value)
        return True

    def fail_all(self, exc: BaseException) -> None:
        """Fail every pending future with ``exc`` (the backend is closing) and forget them."""
        by_id, self._by_id = self._by_id, {}
        for futures in by_id.values():
            for future in futures:
                if not future.done():
                    future.set_exception(exc)

    async def wait(
        self, task_id: str, timeout: float | None, *, registered: Callable[[], None] | None = None
    ) -> T | None:
        """Wait for ``task_id``'s value, or None at ``timeout``.

        ``registered`` runs once the future is in the table: the place to look for a
        document stored before the waiter arrived, or to kick the engine's poller.
        """
        future = self.add(task_id)
        try:
            if registered is not None:
                registered()
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return None
        finally:
            self.discard(task_id, future)


class PollLoop:
    """Runs an engine's ``poll()`` while anyone waits; backs off while nothing changes.

    ``poll()`` returns True when it found something new (the interval drops back to
    ``first``). ``active()`` says whether anyone still waits; the loop ends when nobody
    does and starts again on the next :meth:`kick`. A failing poll is logged and
    retried, never allowed to end the loop while waiters are left hanging.
    """

    def __init__(
        self,
        poll: Callable[[], Awaitable[bool]],
        active: Callable[[], bool],
        *,
        first: float,
        cap: float,
        what: str,
    ) -> None:
        self._poll = poll
        self._active = active
        self._first = first
        self._cap = cap
        self._what = what
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def kick(self) -> None:
        """Poll now (starting the loop if it is not running)."""
        self._kick.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the loop and wait for it to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(self._first, 2.0, self._cap)
        while self._active():
            self._kick.clear()
            try:
                changed = await self._poll()
            except Exception as exc:
                logger.warning("%s poll failed, retrying: %s", self._what, exc)
                changed = False
            if changed:
                backoff.reset()
            try:
                async with asyncio.timeout(backoff.next()):
                    await self._kick.wait()
            except TimeoutError:
                pass
