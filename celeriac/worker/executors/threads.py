"""A thread pool executor (Celery's "threads" pool; "solo" is this with one thread).

Jobs run in a :class:`concurrent.futures.ThreadPoolExecutor` of ``concurrency``
threads, inside a copy of the submitter's :mod:`contextvars` context.

Time limits, and what threads cannot do:

* soft: at the deadline :class:`~celeriac.exceptions.SoftTimeLimitExceeded` is raised
  asynchronously in the job's thread (``PyThreadState_SetAsyncExc``). It lands at the
  next bytecode boundary, so a thread blocked in a C call (``time.sleep``, a socket
  read, a lock wait) sees it only when that call returns.
* hard: at the deadline ``submit`` raises :class:`~celeriac.exceptions.TimeLimitExceeded`
  and the thread is abandoned: a thread cannot be killed. As a best effort,
  TimeLimitExceeded is also raised asynchronously in it (same caveat as above). The
  slot is given back only when the thread really returns, so capacity is never
  over-committed; a thread stuck for ever keeps its slot for ever, and, since
  ThreadPoolExecutor joins its threads at interpreter exit, keeps the process from
  exiting normally (the worker then has to ``os._exit``).

``stop(wait=False)`` cannot kill threads either: running jobs' ``submit`` raise
:class:`~celeriac.exceptions.WorkerLostError` at once and their threads are abandoned.
Cancelling a ``submit`` leaves its job running; the slot comes back when it ends.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celeriac.worker.executors.base import (
    ExecutorStopped,
    Job,
    PendingJob,
    RunningCount,
    Slots,
    job_error,
)

__all__ = ["ThreadExecutor"]

logger = logging.getLogger(__name__)

_INTERRUPTIONS = (SoftTimeLimitExceeded, TimeLimitExceeded)
_Outcome = tuple[bool, Any]  # (True, result) or (False, exception)


def _set_async_exc(ident: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next bytecode boundary (None: clear)."""
    arg = None if exc_type is None else ctypes.py_object(exc_type)  # None is passed as NULL
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), arg)


class _ThreadRun:
    """One job's state, shared by the event loop's thread and the job's thread.

    ``lock`` orders interruptions against the end of ``fn``: once :meth:`leave` has
    run, no interruption is sent or left pending, so none can reach the pool's
    own code or the thread's next job.
    """

    def __init__(self, entry: PendingJob) -> None:
        self.entry = entry
        self.lock = threading.Lock()
        self.ident: int | None = None
        self.in_fn = False
        self.interrupted = False
        self.abandoned = False
        self.soft_timer: asyncio.TimerHandle | None = None
        self.hard_timer: asyncio.TimerHandle | None = None
        job = entry.job
        # Each loop callback from the thread costs a wake-up; skip it when nothing needs it.
        self.needs_start_callback = job.on_start is not None or job.soft_time_limit is not None

    def enter(self) -> None:
        """Called by the job's thread just before ``fn``."""
        with self.lock:
            self.ident = threading.get_ident()
            self.in_fn = True

    def leave(self) -> None:
        """Called by the job's thread after ``fn``: no interruption may land after this."""
        with self.lock:
            self.in_fn = False
            if self.interrupted and self.ident is not None:
                _set_async_exc(self.ident, None)

    def interrupt(self, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the job's thread if it is still inside ``fn``."""
        with self.lock:
            if self.in_fn and self.ident is not None:
                self.interrupted = True
                _set_async_exc(self.ident, exc_type)

    def cancel_timers(self) -> None:
        """Disarm both time-limit timers."""
        for timer in (self.soft_timer, self.hard_timer):
            if timer is not None:
                timer.cancel()


class ThreadExecutor:
    """Runs ``fn(payload)`` in a pool of ``concurrency`` threads.

    ``initializer`` runs once in each new thread (ThreadPoolExecutor's initializer).
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        concurrency: int,
        initializer: Callable[[], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._fn = fn
        self._concurrency = concurrency
        self._initializer = initializer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._slots = Slots(concurrency, self._dispatch)
        self._running = RunningCount()
        self._runs: set[_ThreadRun] = set()
        self._stopped = False

    @property
    def capacity(self) -> int:
        """Number of threads, i.e. of jobs that run at once."""
        return self._concurrency

    async def start(self) -> None:
        """Create the thread pool (threads themselves start on demand)."""
        if self._loop is not None:
            raise RuntimeError("ThreadExecutor.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._concurrency,
            thread_name_prefix="celeriac-worker",
            initializer=self._initializer,
        )

    async def submit(self, job: Job) -> Any:
        """Run ``job`` in the next free thread and return ``fn(job.payload)``."""
        if self._loop is None or self._stopped:
            raise ExecutorStopped()
        entry = PendingJob(job, self._loop.create_future(), context=contextvars.copy_context())
        self._slots.submit(entry)
        return await entry.future

    async def stop(self, *, wait: bool) -> None:
        """Stop; ``wait=True`` lets running jobs finish, else abandons their threads."""
        if self._stopped:
            return
        self._stopped = True
        self._slots.close()
        if wait:
            await self._running.wait_zero()
        else:
            for run in list(self._runs):
                self._abandon(run, WorkerLostError("executor stopped: thread abandoned"))
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- in the event loop's thread -------------------------------------------------------

    def _dispatch(self, entry: PendingJob) -> bool:
        if self._pool is None or self._loop is None:
            return False
        run = _ThreadRun(entry)
        try:
            work = self._pool.submit(self._work, run)
        except RuntimeError as exc:  # pool broken (failing initializer) or shut down
            entry.future.set_exception(exc)
            return False
        self._runs.add(run)
        self._running.add(1)
        job = entry.job
        if job.time_limit is not None:
            run.hard_timer = self._loop.call_later(
                job.time_limit, self._on_hard_limit, run, job.time_limit
            )
        work.add_done_callback(lambda done: self._call_soon(self._on_done, run, done))
        return True

    def _on_started(self, run: _ThreadRun) -> None:
        job = run.entry.job
        if job.soft_time_limit is not None and self._loop is not None and not run.abandoned:
            run.soft_timer = self._loop.call_later(
                job.soft_time_limit, run.interrupt, SoftTimeLimitExceeded
            )
        if job.on_start is not None and run.ident is not None:
            try:
                job.on_start(run.ident)
            except Exception:
                logger.exception("on_start callback failed")

    def _on_hard_limit(self, run: _ThreadRun, limit: float) -> None:
        if self._abandon(run, TimeLimitExceeded(f"Time limit ({limit}s) exceeded")):
            run.interrupt(TimeLimitExceeded)  # best effort: the thread may stop sooner

    def _abandon(self, run: _ThreadRun, reason: BaseException) -> bool:
        """Give up on ``run``: its submitter gets ``reason``; its slot stays taken."""
        if run.abandoned or run not in self._runs:
            return False
        run.abandoned = True
        run.cancel_timers()
        self._running.add(-1)
        if not run.entry.future.done():
            run.entry.future.set_exception(reason)
        return True

    def _on_done(self, run: _ThreadRun, work: concurrent.futures.Future[_Outcome]) -> None:
        run.cancel_timers()
        self._runs.discard(run)
        self._slots.release()
        if run.abandoned:
            return
        self._running.add(-1)
        future = run.entry.future
        if future.done():
            return  # the submitter was cancelled
        if work.cancelled():
            future.set_exception(ExecutorStopped())
            return
        error = work.exception()
        ok, value = (False, error) if error is not None else work.result()
        if ok:
            future.set_result(value)
        else:
            future.set_exception(job_error(value))

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        """Schedule ``callback`` in the loop from any thread (dropped if the loop is closed)."""
        if self._loop is None:
            return
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: an abandoned thread ended after the worker stopped

    # -- in the job's thread --------------------------------------------------------------

    def _work(self, run: _ThreadRun) -> _Outcome:
        """Run ``fn`` and return its outcome; interruptions never escape (see _ThreadRun)."""
        outcome: _Outcome | None = None
        while True:
            try:
                if outcome is None:
                    run.enter()
                    if run.needs_start_callback:
                        self._call_soon(self._on_started, run)
                    outcome = self._call(run)
                run.leave()
                return outcome
            except _INTERRUPTIONS as exc:
                # Landed outside fn (just before or after it); at most one more can come.
                if outcome is None:
                    outcome = (False, exc)

    def _call(self, run: _ThreadRun) -> _Outcome:
        entry = run.entry
        try:
            context = entry.context if entry.context is not None else contextvars.Context()
            return (True, context.run(self._fn, entry.job.payload))
        except BaseException as exc:
            return (False, exc)
