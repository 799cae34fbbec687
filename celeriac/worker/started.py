"""STARTED states for tasks that are still running a moment after they began.

Writing STARTED for every task would put a write on each result's critical path and
double the documents of short tasks; Celery users mostly look at it for long ones.
So a task's STARTED is written only once it has run for ``after`` seconds, by one
timer for all running tasks (not one per task).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["StartedNotes"]


class StartedNotes:
    """Calls ``write(task_id, pid)`` for tasks still running ``after`` seconds after begin."""

    def __init__(self, write: Callable[[str, int], None], *, after: float) -> None:
        self._write = write
        self._after = after
        self._running: dict[str, int] = {}
        """pid of every task begun and neither ended nor written yet, by task id."""
        self._order: deque[tuple[float, str]] = deque()
        """(begin time, task id) in begin order; entries of ended tasks are skipped."""
        self._timer: asyncio.TimerHandle | None = None

    def begin(self, task_id: str, pid: int) -> None:
        """Task ``task_id`` started running in process (or thread) ``pid``."""
        loop = asyncio.get_running_loop()
        self._running[task_id] = pid
        self._order.append((loop.time(), task_id))
        if self._timer is None:
            self._timer = loop.call_later(self._after, self._write_due)

    def end(self, task_id: str) -> None:
        """Task ``task_id`` finished (or wrote its own state): no STARTED for it any more."""
        self._running.pop(task_id, None)

    def cancel(self) -> None:
        """Forget everything (the worker is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._running.clear()
        self._order.clear()

    def _write_due(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        order, running = self._order, self._running
        while order:
            began, task_id = order[0]
            if task_id in running and began + self._after > now:
                self._timer = loop.call_at(began + self._after, self._write_due)
                return
            order.popleft()
            pid = running.pop(task_id, None)
            if pid is not None:
                self._write(task_id, pid)
