"""Runs coroutine functions (``async def`` tasks) as asyncio tasks on the worker's own loop.

At most ``concurrency`` jobs run at once; each runs in its own :class:`asyncio.Task`
inside a copy of the submitter's :mod:`contextvars` context.

Time limits:

* hard: at the deadline ``submit`` raises :class:`~celeriac.exceptions.TimeLimitExceeded`
  and the job's task is cancelled (the coroutine sees a plain ``CancelledError``).
  Its slot is given back when the task really ends; a coroutine that swallows
  cancellations keeps it.
* soft: at the deadline the job's task is cancelled and, at the await point where
  the coroutine is suspended, it sees :class:`AsyncSoftTimeLimitExceeded` instead of
  ``CancelledError``. That exception is both a
  :class:`~celeriac.exceptions.SoftTimeLimitExceeded` (so ``except
  SoftTimeLimitExceeded`` and ``except Exception`` catch it, as in Celery) and an
  ``asyncio.CancelledError`` (so asyncio and libraries clean up as for a
  cancellation: ``wait_for`` cancels its inner task, ``gather`` its children, a
  half-read connection is dropped). Whatever the coroutine was awaiting has been
  cancelled. The task's cancellation request is withdrawn (``Task.uncancel``), so a
  coroutine that catches the exception can go on awaiting normally. If it escapes
  ``fn``, ``submit`` raises a plain SoftTimeLimitExceeded.

Cancelling a ``submit`` cancels its job. ``stop(wait=False)`` cancels every running
job; their ``submit`` raise :class:`~celeriac.exceptions.WorkerLostError`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celeriac.worker.executors.base import (
    Done,
    ExecutorStopped,
    Job,
    PendingJob,
    RunningCount,
    Slots,
    job_error,
    submit_and_wait,
)

__all__ = ["AsyncSoftTimeLimitExceeded", "InLoopExecutor"]

logger = logging.getLogger(__name__)

_CANCEL_GRACE = 1.0  # seconds stop(wait=False) gives cancelled jobs to unwind


class AsyncSoftTimeLimitExceeded(SoftTimeLimitExceeded, asyncio.CancelledError):
    """The soft time limit, as seen by a coroutine at its await point (see the module doc)."""


class _Run:
    """One running job: its task and time-limit state."""

    __slots__ = ("abandoned", "entry", "on_done", "soft_pending", "task", "timers")

    def __init__(self, entry: PendingJob) -> None:
        self.entry = entry
        self.task: asyncio.Task[Any] | None = None
        self.soft_pending = False  # a soft-limit cancellation is on its way to the coroutine
        self.abandoned = False
        self.timers: list[asyncio.TimerHandle] = []
        self.on_done: Callable[[_Run, asyncio.Task[Any]], None] | None = None

    def ended(self, task: asyncio.Task[Any]) -> None:
        """The task's done callback (a bound method: no closure per job)."""
        if self.on_done is not None:
            self.on_done(self, task)

    def cancel(self) -> None:
        """The job was cancelled by its submitter: cancel the coroutine too."""
        if self.task is not None and not self.task.done():
            self.soft_pending = False
            self.task.cancel()


@types.coroutine
def _soft_limited(coro: Coroutine[Any, Any, Any], run: _Run) -> Generator[Any, Any, Any]:
    """Drive ``coro``, turning the soft limit's cancellation into AsyncSoftTimeLimitExceeded.

    It sits between the task and ``coro``: everything ``coro`` yields goes to the
    task unchanged, and what the task throws in goes to ``coro`` unchanged, except
    the cancellation caused by the soft limit.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            yielded = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            return stop.value
        except AsyncSoftTimeLimitExceeded as exc:
            raise SoftTimeLimitExceeded(*exc.args) from None  # not a cancellation out here
        except SystemExit as exc:
            raise job_error(exc) from exc  # a task calling sys.exit() must not stop the loop
        value, error = None, None
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except asyncio.CancelledError as exc:
            error = _soft_or(exc, run)
        except BaseException as exc:
            error = exc


def _soft_or(exc: asyncio.CancelledError, run: _Run) -> BaseException:
    """The exception to throw into the coroutine for a cancellation of its task."""
    if not run.soft_pending or run.task is None:
        return exc
    run.soft_pending = False
    run.task.uncancel()  # this cancellation is consumed here: asyncio.timeout etc. stay exact
    soft = run.entry.job.soft_time_limit
    return AsyncSoftTimeLimitExceeded(f"Soft time limit ({soft}s) exceeded")


class InLoopExecutor:
    """Runs ``await fn_async(payload)`` as asyncio tasks, at most ``concurrency`` at once."""

    def __init__(
        self, fn_async: Callable[[Any], Coroutine[Any, Any, Any]], *, concurrency: int
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._fn = fn_async
        self._concurrency = concurrency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = Slots(concurrency, self._dispatch)
        self._running = RunningCount()
        self._runs: dict[PendingJob, _Run] = {}
        self._stopped = False

    @property
    def capacity(self) -> int:
        """How many jobs run at once."""
        return self._concurrency

    async def start(self) -> None:
        """Bind to the running loop."""
        if self._loop is not None:
            raise RuntimeError("InLoopExecutor.start() called twice")
        self._loop = asyncio.get_running_loop()

    def run(self, job: Job, done: Done) -> PendingJob:
        """Run ``job`` as an asyncio task when a slot is free; ``done`` gets its outcome.

        Cancelling the returned entry cancels the job's task.
        """
        entry = PendingJob(job, done)
        if self._loop is None or self._stopped:
            entry.finish(False, ExecutorStopped())
            return entry
        self._slots.submit(entry)
        return entry

    async def submit(self, job: Job) -> Any:
        """Run ``job`` as soon as a slot is free and return ``await fn_async(job.payload)``."""
        return await submit_and_wait(self.run, job)

    async def stop(self, *, wait: bool) -> None:
        """Stop; ``wait=True`` lets running jobs finish, else cancels them."""
        if self._stopped:
            return
        self._stopped = True
        self._slots.close()
        if wait:
            await self._running.wait_zero()
            return
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for run in list(self._runs.values()):
            self._abandon(run, WorkerLostError("executor stopped: job cancelled"))
        if tasks:
            await asyncio.wait(tasks, timeout=_CANCEL_GRACE)

    def _dispatch(self, entry: PendingJob) -> bool:
        if self._loop is None:
            return False
        run = _Run(entry)
        run.task = self._loop.create_task(self._run(run))
        run.task.add_done_callback(run.ended)
        run.on_done = self._on_done
        entry.on_cancel = run.cancel
        self._runs[entry] = run
        self._running.add(1)
        return True

    async def _run(self, run: _Run) -> Any:
        job = run.entry.job
        # Armed once the task runs, so that a limit can only hit inside _soft_limited.
        loop = asyncio.get_running_loop()
        if job.soft_time_limit is not None:
            run.timers.append(loop.call_later(job.soft_time_limit, self._on_soft, run))
        if job.time_limit is not None:
            run.timers.append(
                loop.call_later(job.time_limit, self._on_hard_limit, run, job.time_limit)
            )
        if job.on_start is not None:
            try:
                job.on_start(os.getpid())
            except Exception:
                logger.exception("on_start callback failed")
        if job.soft_time_limit is not None:
            return await _soft_limited(self._fn(job.payload), run)
        try:
            return await self._fn(job.payload)
        except SystemExit as exc:
            raise job_error(exc) from exc  # a task calling sys.exit() must not stop the loop

    def _on_soft(self, run: _Run) -> None:
        if run.task is not None and not run.task.done() and not run.abandoned:
            run.soft_pending = True
            run.task.cancel()

    def _on_hard_limit(self, run: _Run, limit: float) -> None:
        self._abandon(run, TimeLimitExceeded(f"Time limit ({limit}s) exceeded"))

    def _abandon(self, run: _Run, reason: BaseException) -> None:
        """Fail ``run``'s submitter with ``reason`` and cancel its task; the slot waits for it."""
        if run.abandoned or run.task is None or run.task.done():
            return
        run.abandoned = True
        run.soft_pending = False
        for timer in run.timers:
            timer.cancel()
        self._running.add(-1)
        run.entry.finish(False, reason)
        run.task.cancel()

    def _on_done(self, run: _Run, task: asyncio.Task[Any]) -> None:
        for timer in run.timers:
            timer.cancel()
        self._runs.pop(run.entry, None)
        self._slots.release()
        if run.abandoned:
            if not task.cancelled():
                task.exception()  # retrieved: an abandoned job's outcome is dropped
            return
        self._running.add(-1)
        entry = run.entry
        entry.on_cancel = None  # (a cycle: the entry and its run; let refcounting free them)
        run.task = None
        if task.cancelled():
            entry.finish(False, RuntimeError("the job's coroutine was cancelled"))
        elif (error := task.exception()) is not None:
            entry.finish(False, job_error(error))
        else:
            entry.finish(True, task.result())
