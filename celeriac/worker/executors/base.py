"""The Executor interface shared by the process, thread and in-loop executors.

An executor runs one function (given at construction) on many payloads, at most
``capacity`` at a time, and hands each return value back to an awaiting coroutine.
Executors know nothing about tasks, messages or results: the worker wraps a task
call into a payload and the function into something that returns a structured
outcome.

Contract common to every executor:

* ``submit`` waits (asynchronously) for a free slot, runs the job and returns
  ``fn(payload)``'s value; if ``fn`` raises, ``submit`` raises an equivalent exception.
* ``Job.on_start`` is called as soon as the job starts running (by the thread pool
  in the job's own thread, by the others in the event loop's thread). If ``submit``
  raises and ``on_start`` was never called, the job never ran (safe to redeliver).
* The hard ``time_limit`` makes ``submit`` raise
  :class:`~celeriac.exceptions.TimeLimitExceeded`; the soft limit raises
  :class:`~celeriac.exceptions.SoftTimeLimitExceeded` inside ``fn``.
* After ``stop()`` (and for submissions still waiting for a slot when it is
  called) ``submit`` raises :class:`ExecutorStopped`, a
  :class:`~celeriac.exceptions.WorkerLostError` meaning "this job never started".
* ``Job.guard``, if set, is asked right before the job would start; False means "do not
  start it": the job ends with :class:`NotStarted` (an :class:`ExecutorStopped`, so the
  worker puts the delivery back) and never runs.
* ``run(job, done)`` is the same without a coroutine: the worker's hot path uses it,
  so a job costs a callback instead of a task and a future. ``submit`` is ``run``
  plus a future (:func:`submit_and_wait`).
* Executors are one-shot: ``start()`` once, ``stop()`` once.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from celeriac.exceptions import WorkerLostError

__all__ = [
    "Done",
    "Executor",
    "ExecutorStopped",
    "Job",
    "JobQueue",
    "NotStarted",
    "PendingJob",
    "RunningCount",
    "Slots",
    "job_error",
    "submit_and_wait",
]

Done = Callable[[bool, Any], None]
"""A job's completion callback: ``done(True, value)`` or ``done(False, exception)``."""


@dataclass(slots=True)
class Job:
    """One call to run: ``fn(payload)`` with optional time limits (in seconds).

    ``on_start`` is called when the job starts running, with the pid of the child
    process (processes), the thread ident (threads) or this process's pid (in-loop).
    The thread pool calls it from the job's own thread, so it must be thread-safe.
    """

    payload: Any
    time_limit: float | None = None
    soft_time_limit: float | None = None
    on_start: Callable[[int], None] | None = None
    guard: Callable[[], bool] | None = None
    """Asked right before the job starts (in the thread that starts it); False: it does not
    run and ends with :class:`NotStarted`."""

    def may_start(self) -> bool:
        """Whether the guard (if any) lets the job start now."""
        return self.guard is None or self.guard()


class ExecutorStopped(WorkerLostError):
    """The executor was stopped before this job started; the job never ran."""

    def __init__(self, message: str = "executor stopped before the job started") -> None:
        super().__init__(message)


class NotStarted(ExecutorStopped):
    """The job's guard said not to start it (the worker no longer holds its message)."""

    def __init__(self, message: str = "not started: the worker's lease was lost") -> None:
        super().__init__(message)


@dataclass(slots=True, eq=False)
class PendingJob:
    """A job handed to an executor, and how its outcome is reported.

    ``done`` is called exactly once, in the event loop's thread, unless the job was
    cancelled first. ``context`` is the submitter's :mod:`contextvars` context, for
    executors that run ``fn`` in it (threads); ``data`` is the pickled job (processes);
    ``on_cancel`` is how an executor stops a running job that is cancelled (in-loop).
    """

    job: Job
    done: Done
    context: contextvars.Context | None = None
    data: bytes = b""
    cancelled: bool = False
    finished: bool = False
    on_cancel: Callable[[], None] | None = None

    def finish(self, ok: bool, value: Any) -> None:
        """Report the outcome (once; never after :meth:`cancel`)."""
        if self.finished or self.cancelled:
            return
        self.finished = True
        self.done(ok, value)

    def cancel(self) -> None:
        """Nobody wants the outcome any more: a queued job is skipped, a running one dropped."""
        if self.finished or self.cancelled:
            return
        self.cancelled = True
        if self.on_cancel is not None:
            self.on_cancel()

    @property
    def waiting(self) -> bool:
        """Whether the submitter still expects an outcome."""
        return not (self.finished or self.cancelled)


class Executor(Protocol):
    """Runs jobs on a bounded number of slots (processes, threads or asyncio tasks)."""

    @property
    def capacity(self) -> int:
        """How many jobs can run at the same time."""
        ...

    async def start(self) -> None:
        """Create the slots (fork children, ...); ready to accept jobs when it returns."""
        ...

    def run(self, job: Job, done: Done) -> PendingJob:
        """Run ``job`` as soon as a slot is free; ``done`` gets ``fn(job.payload)``'s outcome.

        ``done`` is called in the event loop's thread. After ``stop()`` it is called at
        once with :class:`ExecutorStopped`.
        """
        ...

    async def submit(self, job: Job) -> Any:
        """Run ``job`` as soon as a slot is free and return ``fn(job.payload)``."""
        ...

    async def stop(self, *, wait: bool) -> None:
        """Stop accepting jobs; ``wait=True`` lets running jobs finish, else kills them."""
        ...


async def submit_and_wait(run: Callable[[Job, Done], PendingJob], job: Job) -> Any:
    """``submit`` on top of ``run``: await the outcome; cancelling the wait cancels the job."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def done(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    pending = run(job, done)
    try:
        return await future
    except asyncio.CancelledError:
        pending.cancel()
        raise


class JobQueue:
    """Jobs waiting for a free slot, oldest first.

    Executors dispatch the next job straight from the callback that frees a slot,
    so a queued job starts without waiting for its submitter's coroutine to wake up.
    Cancelled jobs are skipped.
    """

    def __init__(self) -> None:
        self._entries: deque[PendingJob] = deque()

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, entry: PendingJob) -> None:
        """Queue ``entry`` behind the others."""
        self._entries.append(entry)

    def push_front(self, entry: PendingJob) -> None:
        """Put ``entry`` back at the head (its dispatch failed before it started)."""
        self._entries.appendleft(entry)

    def pop(self) -> PendingJob | None:
        """Take the oldest job still wanted and allowed to start (its guard), or None; a job
        its guard refuses ends with :class:`NotStarted`."""
        while self._entries:
            entry = self._entries.popleft()
            if not entry.waiting:
                continue
            if not entry.job.may_start():
                entry.finish(False, NotStarted())
                continue
            return entry
        return None

    def fail_all(self) -> None:
        """Report ExecutorStopped for every queued job (they never started)."""
        while self._entries:
            self._entries.popleft().finish(False, ExecutorStopped())


class Slots:
    """A number of interchangeable slots (threads, asyncio tasks) and the jobs queued for them.

    ``dispatch(entry)`` starts a job on a slot and returns False if it could not (the
    slot stays free); the executor calls :meth:`release` when a job really ends.
    """

    def __init__(self, count: int, dispatch: Callable[[PendingJob], bool]) -> None:
        self._free = count
        self._dispatch = dispatch
        self._queue = JobQueue()
        self._closed = False

    @property
    def free(self) -> int:
        """How many slots are free right now."""
        return self._free

    def submit(self, entry: PendingJob) -> None:
        """Start ``entry`` now if a slot is free, else queue it."""
        self._queue.push(entry)
        self._fill()

    def release(self) -> None:
        """A job ended: its slot goes to the next queued job."""
        self._free += 1
        self._fill()

    def close(self) -> None:
        """Start nothing more; queued submitters raise ExecutorStopped."""
        self._closed = True
        self._queue.fail_all()

    def _fill(self) -> None:
        while self._free > 0 and not self._closed:
            entry = self._queue.pop()
            if entry is None:
                return
            self._free -= 1
            if not self._dispatch(entry):
                self._free += 1


class RunningCount:
    """Counts running jobs so that ``stop(wait=True)`` can wait for none to be left."""

    def __init__(self) -> None:
        self._count = 0
        self._zero = asyncio.Event()
        self._zero.set()

    def __int__(self) -> int:
        return self._count

    def add(self, delta: int) -> None:
        """Record ``delta`` jobs starting (positive) or ending (negative)."""
        self._count += delta
        if self._count == 0:
            self._zero.set()
        else:
            self._zero.clear()

    async def wait_zero(self) -> None:
        """Return once no job is running."""
        await self._zero.wait()


def job_error(exc: BaseException) -> BaseException:
    """The exception ``submit`` raises when ``fn`` raised ``exc``.

    ``exc`` itself when it is an ordinary exception; otherwise (SystemExit,
    CancelledError, StopIteration, which futures and tasks treat specially) a
    RuntimeError naming it, so that it cannot stop or cancel the worker's own code.
    """
    if isinstance(exc, Exception) and not isinstance(exc, StopIteration):
        return exc
    cls = type(exc)
    return RuntimeError(f"{cls.__module__}.{cls.__qualname__}: {exc}")
