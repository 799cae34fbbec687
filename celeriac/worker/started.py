"""STARTED states for tasks that are still running a moment after they began.

Writing STARTED for every task would put a write on each result's critical path and
double the documents of short tasks; Celery users mostly look at it for long ones.
So a task's STARTED is written only once it has run for ``after`` seconds, by one
timer for all running tasks (not one per task).

A job may begin in another thread (a pool thread takes it from a shared queue), so
:meth:`StartedNotes.begin` only appends to a thread-safe deque; everything else runs
in the event loop's thread, which reads that deque when it needs to.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

__all__ = ["StartedNotes"]


class StartedNotes:
    """Calls ``write(task_id, pid)`` for tasks still running ``after`` seconds after begin.

    In the loop's thread: :meth:`expect` when a tracked job is handed to an executor,
    :meth:`finished` when it ends, :meth:`superseded` when the task wrote its own state.
    From any thread: :meth:`begin` when the job really starts.
    """

    def __init__(self, write: Callable[[str, int], None], *, after: float) -> None:
        self._write = write
        self._after = after
        self._begun: deque[tuple[float, str, int]] = deque()
        """(begin time, task id, pid) appended by whichever thread starts a job."""
        self._running: dict[str, int] = {}
        """pid of every task begun and neither ended nor written yet, by task id."""
        self._order: deque[tuple[float, str]] = deque()
        """(begin time, task id) in begin order; entries no longer running are skipped."""
        self._expected = 0
        """Tracked jobs handed to executors and not finished: the timer runs while any are."""
        self._timer: asyncio.TimerHandle | None = None

    def expect(self) -> None:
        """A tracked job was handed to an executor (it begins now or later)."""
        self._expected += 1
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._after, self._write_due)

    def begin(self, task_id: str, pid: int) -> None:
        """Task ``task_id`` started running in process (or thread) ``pid``; any thread."""
        self._begun.append((time.monotonic(), task_id, pid))

    def finished(self, task_id: str) -> None:
        """A tracked task ended: no STARTED for it any more."""
        self._expected -= 1
        self.superseded(task_id)

    def superseded(self, task_id: str) -> None:
        """The task wrote its own state (``update_state``): its STARTED would be stale."""
        self._take_begun()
        self._running.pop(task_id, None)

    def cancel(self) -> None:
        """Forget everything (the worker is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._running.clear()
        self._order.clear()
        self._begun.clear()

    def _take_begun(self) -> None:
        begun, running, order = self._begun, self._running, self._order
        while begun:
            began, task_id, pid = begun.popleft()
            running[task_id] = pid
            order.append((began, task_id))

    def _write_due(self) -> None:
        self._timer = None
        self._take_begun()
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        order, running = self._order, self._running
        while order:
            began, task_id = order[0]
            if task_id in running and began + self._after > now:
                self._timer = loop.call_later(began + self._after - now, self._write_due)
                return
            order.popleft()
            pid = running.pop(task_id, None)
            if pid is not None:
                self._write(task_id, pid)
        if self._expected > 0:  # jobs queued in an executor may begin later
            self._timer = loop.call_later(self._after, self._write_due)
