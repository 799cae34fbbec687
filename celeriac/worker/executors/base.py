"""The Executor interface shared by the process, thread and in-loop executors.

An executor runs one function (given at construction) on many payloads, at most
``capacity`` at a time, and hands each return value back to an awaiting coroutine.
Executors know nothing about tasks, messages or results: the worker wraps a task
call into a payload and the function into something that returns a structured
outcome.

Contract common to every executor:

* ``submit`` waits (asynchronously) for a free slot, runs the job and returns
  ``fn(payload)``'s value; if ``fn`` raises, ``submit`` raises an equivalent exception.
* ``Job.on_start`` is called in the event loop's thread as soon as the job starts
  running. If ``submit`` raises and ``on_start`` was never called, the job never
  ran (safe to redeliver).
* The hard ``time_limit`` makes ``submit`` raise
  :class:`~celeriac.exceptions.TimeLimitExceeded`; the soft limit raises
  :class:`~celeriac.exceptions.SoftTimeLimitExceeded` inside ``fn``.
* After ``stop()`` (and for submissions still waiting for a slot when it is
  called) ``submit`` raises :class:`ExecutorStopped`, a
  :class:`~celeriac.exceptions.WorkerLostError` meaning "this job never started".
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
    "Executor",
    "ExecutorStopped",
    "Job",
    "JobQueue",
    "PendingJob",
    "RunningCount",
    "Slots",
    "job_error",
]


@dataclass(slots=True)
class Job:
    """One call to run: ``fn(payload)`` with optional time limits (in seconds).

    ``on_start`` is called in the event loop's thread when the job starts running,
    with the pid of the child process (processes), the thread ident (threads) or
    this process's pid (in-loop).
    """

    payload: Any
    time_limit: float | None = None
    soft_time_limit: float | None = None
    on_start: Callable[[int], None] | None = None


class ExecutorStopped(WorkerLostError):
    """The executor was stopped before this job started; the job never ran."""

    def __init__(self, message: str = "executor stopped before the job started") -> None:
        super().__init__(message)


class Executor(Protocol):
    """Runs jobs on a bounded number of slots (processes, threads or asyncio tasks)."""

    @property
    def capacity(self) -> int:
        """How many jobs can run at the same time."""
        ...

    async def start(self) -> None:
        """Create the slots (fork children, ...); ready to accept jobs when it returns."""
        ...

    async def submit(self, job: Job) -> Any:
        """Run ``job`` as soon as a slot is free and return ``fn(job.payload)``."""
        ...

    async def stop(self, *, wait: bool) -> None:
        """Stop accepting jobs; ``wait=True`` lets running jobs finish, else kills them."""
        ...


@dataclass(slots=True)
class PendingJob:
    """A submitted job and the future its submitter awaits.

    ``context`` is the submitter's :mod:`contextvars` context, for executors that run
    ``fn`` with it (threads, in-loop); ``data`` is the pickled job (processes).
    """

    job: Job
    future: asyncio.Future[Any]
    context: contextvars.Context | None = None
    data: bytes = b""


class JobQueue:
    """Jobs waiting for a free slot, oldest first.

    Executors dispatch the next job straight from the callback that frees a slot,
    so a queued job starts without waiting for its submitter's coroutine to wake up.
    Jobs whose submitter was cancelled meanwhile are skipped.
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
        """Take the oldest job whose submitter still waits, or None."""
        while self._entries:
            entry = self._entries.popleft()
            if not entry.future.done():
                return entry
        return None

    def fail_all(self) -> None:
        """Make every queued submitter raise ExecutorStopped (their jobs never started)."""
        while self._entries:
            entry = self._entries.popleft()
            if not entry.future.done():
                entry.future.set_exception(ExecutorStopped())


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
