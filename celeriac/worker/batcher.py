"""Coalesce many small writes (acks, result documents) into one round trip.

Items put during one turn of the event loop are flushed together in the next:
when idle, an item waits for at most one loop turn, so latency does not suffer.
Under load a ``linger`` hint may hold a flush a little longer: a prefork worker
finishes its tasks one loop turn apart, and without lingering would send one
round trip per task instead of one per many. When the hint says nothing else is on
its way (:data:`NOW`), the flush starts at once, without waiting for that turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["NOW", "Batcher"]

T = TypeVar("T")
logger = logging.getLogger("celeriac.worker")

NOW = -1.0
"""What ``linger`` returns when nothing else is on its way: flush at once, without waiting
for the rest of the loop turn (a lone task's result)."""


class Batcher(Generic[T]):
    """Collects items and calls ``flush(items)`` once per batch, in order.

    ``linger(items)``, if given, is asked before each flush how many seconds to wait
    for more items (0: flush at the next loop turn; :data:`NOW`: flush at once).
    """

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[None]],
        *,
        max_size: int = 1000,
        linger: Callable[[Sequence[T]], float] | None = None,
    ) -> None:
        self._flush = flush
        self._max_size = max_size
        self._linger = linger
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[None] | None] = []
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def queued(self) -> int:
        """Items added and not yet handed to a flush."""
        return len(self._items)

    def add(self, item: T) -> None:
        """Queue ``item`` without a way to learn when it is written (flush errors are logged)."""
        self._items.append(item)
        self._waiters.append(None)
        self._start()

    def put_nowait(self, item: T) -> asyncio.Future[None]:
        """Queue ``item``; the returned future resolves when its batch is written."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiters.append(future)
        self._start()
        return future

    async def put(self, item: T) -> None:
        """Queue ``item`` and wait until it is written (raises what the flush raised)."""
        await self.put_nowait(item)

    def _start(self) -> None:
        if self._task is None:
            self._idle.clear()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._items:
                if self._pause() != NOW:
                    await asyncio.sleep(0)  # let the rest of this loop turn add to the batch
                    pause = self._pause()
                    if pause > 0 and len(self._items) < self._max_size:
                        await asyncio.sleep(pause)  # more items are on their way: wait
                items, waiters = self._items[: self._max_size], self._waiters[: self._max_size]
                del self._items[: len(items)], self._waiters[: len(waiters)]
                try:
                    await self._flush(items)
                except Exception as exc:
                    _settle(waiters, exc)
                    continue
                _settle(waiters, None)
        finally:
            self._task = None
            if self._items:  # put during the last flush's await
                self._start()
            else:
                self._idle.set()

    def _pause(self) -> float:
        return self._linger(self._items) if self._linger is not None else 0.0

    async def drain(self) -> None:
        """Wait until everything queued so far is flushed."""
        await self._idle.wait()


def _settle(waiters: list[asyncio.Future[None] | None], error: Exception | None) -> None:
    unwatched = False
    for waiter in waiters:
        if waiter is None:
            unwatched = True
        elif not waiter.done():
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)
    if error is not None and unwatched:
        logger.error("batched write failed: %r", error)
