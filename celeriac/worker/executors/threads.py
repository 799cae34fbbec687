"""A thread pool executor (Celery's "threads" pool; "solo" is this with one thread).

Jobs go on one shared queue, and each of the ``concurrency`` threads takes the next
job as soon as it is free, calling ``on_start`` (with its thread ident) itself. A
thread puts finished jobs on one shared list and wakes the event loop only when the
loop is not already due to look at that list. So under load a thread runs job after
job without waiting for the loop, and a batch of outcomes costs one wake-up: the
loop and the pool threads hand work over per batch, not per job. Jobs run inside a
copy of the submitter's :mod:`contextvars` context.

Time limits, and what threads cannot do:

* soft: at the deadline :class:`~celeriac.exceptions.SoftTimeLimitExceeded` is raised
  asynchronously in the job's thread (``PyThreadState_SetAsyncExc``). It lands at the
  next bytecode boundary, so a thread blocked in a C call (``time.sleep``, a socket
  read, a lock wait) sees it only when that call returns.
* hard: at the deadline ``submit`` raises :class:`~celeriac.exceptions.TimeLimitExceeded`
  and the thread is abandoned: a thread cannot be killed. As a best effort,
  TimeLimitExceeded is also raised asynchronously in it (same caveat as above). The
  thread takes no other job until it really returns, so at most ``concurrency`` jobs
  ever run; a thread stuck for ever keeps its place for ever (threads are daemons,
  so it does not keep the process from exiting).

Both limits are counted from the moment the job's thread starts it (the thread asks
the loop to arm them; only jobs with limits cost that wake-up).

``stop(wait=False)`` cannot kill threads either: running jobs' ``submit`` raise
:class:`~celeriac.exceptions.WorkerLostError` at once and their threads are abandoned;
queued jobs raise :class:`ExecutorStopped`. Cancelling a ``submit`` drops a queued job
and leaves a running one running.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celeriac.worker.executors.base import (
    Done,
    ExecutorStopped,
    Job,
    NotStarted,
    PendingJob,
    RunningCount,
    job_error,
    submit_and_wait,
)

__all__ = ["ThreadExecutor"]

logger = logging.getLogger(__name__)

_INTERRUPTIONS = (SoftTimeLimitExceeded, TimeLimitExceeded)


def _set_async_exc(ident: int, exc_type: type[BaseException] | None) -> None:
    """Raise ``exc_type`` in thread ``ident`` at its next bytecode boundary (None: clear)."""
    arg = None if exc_type is None else ctypes.py_object(exc_type)  # None is passed as NULL
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), arg)


class _ThreadRun:
    """One job's state, shared by the event loop's thread and the job's thread.

    ``lock`` orders interruptions against the start and end of ``fn``: one that comes
    before ``fn`` started is raised when it starts; once :meth:`leave` has run, none is
    sent or left pending, so none can reach the pool's own code or the next job.
    ``taken`` (set under the lock) tells a job a thread took from one never started.
    """

    __slots__ = (
        "abandoned",
        "entry",
        "hard_timer",
        "ident",
        "in_fn",
        "interrupted",
        "left",
        "lock",
        "ok",
        "pending",
        "soft_timer",
        "taken",
        "value",
    )

    def __init__(self, entry: PendingJob) -> None:
        self.entry = entry
        self.ident = 0
        self.lock = threading.Lock()
        self.taken = False
        self.in_fn = False
        self.left = False
        self.interrupted = False
        self.pending: type[BaseException] | None = None
        self.abandoned = False
        self.soft_timer: asyncio.TimerHandle | None = None
        self.hard_timer: asyncio.TimerHandle | None = None
        self.ok = False
        self.value: Any = None

    def take(self, ident: int) -> bool:
        """Called by a pool thread that dequeued the job; False if it must not run."""
        with self.lock:
            if self.abandoned or not self.entry.waiting:
                return False
            self.taken = True
            self.ident = ident
            return True

    def enter(self) -> type[BaseException] | None:
        """Called by the job's thread just before ``fn``; returns an interruption already due."""
        with self.lock:
            self.in_fn = True
            return self.pending

    def leave(self) -> None:
        """Called by the job's thread after ``fn``: no interruption may land after this."""
        with self.lock:
            self.in_fn = False
            self.left = True
            if self.interrupted:
                _set_async_exc(self.ident, None)

    def interrupt(self, exc_type: type[BaseException]) -> None:
        """Raise ``exc_type`` in the job's thread while it runs ``fn`` (or when it starts it)."""
        with self.lock:
            if self.left:
                return
            if not self.in_fn:
                self.pending = self.pending or exc_type
                return
            self.interrupted = True
            _set_async_exc(self.ident, exc_type)

    def cancel_timers(self) -> None:
        """Disarm both time-limit timers."""
        for timer in (self.soft_timer, self.hard_timer):
            if timer is not None:
                timer.cancel()


class ThreadExecutor:
    """Runs ``fn(payload)`` in a pool of ``concurrency`` threads.

    ``initializer`` runs once in each thread when :meth:`start` creates it; if it
    raises, ``start`` raises.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        concurrency: int,
        initializer: Callable[[], None] | None = None,
        on_hard_limit: Callable[[], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._fn = fn
        self._concurrency = concurrency
        self._initializer = initializer
        self._on_hard_limit_hook = on_hard_limit
        """Called after a job passed its hard time limit and its thread was abandoned."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads: list[threading.Thread] = []
        self._jobs: queue.SimpleQueue[_ThreadRun | None] = queue.SimpleQueue()
        self._queued: set[_ThreadRun] = set()
        """Jobs handed over and not finished (queued or running)."""
        self._running = RunningCount()
        self._finished: deque[_ThreadRun] = deque()
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._starting: list[asyncio.Future[BaseException | None]] = []
        self._stopped = False

    @property
    def capacity(self) -> int:
        """Number of threads, i.e. of jobs that run at once."""
        return self._concurrency

    async def start(self) -> None:
        """Start the threads and run the initializer in each."""
        if self._loop is not None:
            raise RuntimeError("ThreadExecutor.start() called twice")
        loop = self._loop = asyncio.get_running_loop()
        self._starting = [loop.create_future() for _ in range(self._concurrency)]
        for index, started in enumerate(self._starting):
            thread = threading.Thread(
                target=self._thread_main,
                args=(started,),
                name=f"celeriac-worker-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()
        errors = await asyncio.gather(*self._starting)
        failed = next((error for error in errors if error is not None), None)
        if failed is not None:
            await self.stop(wait=False)
            raise RuntimeError(f"executor thread failed to start: {failed!r}") from failed

    def run(self, job: Job, done: Done) -> PendingJob:
        """Queue ``job`` for the next free thread; ``done`` gets its outcome in the loop."""
        entry = PendingJob(job, done, context=contextvars.copy_context())
        if self._loop is None or self._stopped:
            entry.finish(False, ExecutorStopped())
            return entry
        run = _ThreadRun(entry)
        self._queued.add(run)
        self._running.add(1)
        self._jobs.put(run)
        return entry

    async def submit(self, job: Job) -> Any:
        """Run ``job`` in the next free thread and return ``fn(job.payload)``."""
        return await submit_and_wait(self.run, job)

    async def stop(self, *, wait: bool) -> None:
        """Stop; ``wait=True`` lets queued and running jobs finish, else gives them up."""
        if self._stopped:
            return
        self._stopped = True
        if wait:
            await self._running.wait_zero()
        else:
            for run in list(self._queued):
                self._give_up(run)
        for _ in self._threads:
            self._jobs.put(None)  # busy (abandoned) threads exit after their job

    def drop_queued(self) -> int:
        """Give back every job no thread has taken yet (they end as never started, with
        :class:`ExecutorStopped`); running ones go on. Returns how many were dropped."""
        dropped = 0
        for run in list(self._queued):
            with run.lock:
                if run.taken:
                    continue
                run.abandoned = True  # a thread dequeuing it later leaves it alone
            self._end(run)
            run.entry.finish(False, ExecutorStopped())
            dropped += 1
        return dropped

    def give_up_running(self, entry: PendingJob) -> bool:
        """Abandon the running job ``entry`` (its submitter gets WorkerLostError at once; its
        thread runs on, unkillable); False if it is not running here."""
        for run in list(self._queued):
            if run.entry is entry and run.taken:
                return self._abandon(run, WorkerLostError("terminated: thread abandoned"))
        return False

    # -- in the event loop's thread -------------------------------------------------------

    def _give_up(self, run: _ThreadRun) -> None:
        """stop(wait=False): a running job is abandoned, a queued one never starts."""
        with run.lock:
            taken = run.taken
            run.abandoned = True  # a thread dequeuing it later leaves it alone
        if taken:
            self._abandon(run, WorkerLostError("executor stopped: thread abandoned"))
        else:
            self._end(run)
            run.entry.finish(False, ExecutorStopped())

    def _arm_limits(self, run: _ThreadRun) -> None:
        """Loop callback from a thread that started a job with time limits."""
        job = run.entry.job
        if self._loop is None or run.abandoned or run not in self._queued:
            return
        if job.time_limit is not None:
            run.hard_timer = self._loop.call_later(
                job.time_limit, self._on_hard_limit, run, job.time_limit
            )
        if job.soft_time_limit is not None:
            run.soft_timer = self._loop.call_later(
                job.soft_time_limit, run.interrupt, SoftTimeLimitExceeded
            )

    def _on_hard_limit(self, run: _ThreadRun, limit: float) -> None:
        if self._abandon(run, TimeLimitExceeded(f"Time limit ({limit}s) exceeded")):
            if self._on_hard_limit_hook is not None:
                # Its owner ends the thread with its process (a slot): no exception is
                # injected into a thread that is about to go anyway.
                self._on_hard_limit_hook()
            else:
                run.interrupt(TimeLimitExceeded)  # best effort: the thread may stop sooner

    def _abandon(self, run: _ThreadRun, reason: BaseException) -> bool:
        """Give up on a running job: its submitter gets ``reason``; its thread stays busy."""
        if run not in self._queued:
            return False
        run.abandoned = True
        self._end(run)
        run.entry.finish(False, reason)
        return True

    def _end(self, run: _ThreadRun) -> None:
        run.cancel_timers()
        self._queued.discard(run)
        self._running.add(-1)

    def _drain_finished(self) -> None:
        """Loop callback: settle every job the threads have finished so far."""
        with self._wake_lock:
            self._wake_pending = False
        finished = self._finished
        while finished:
            run = finished.popleft()
            if run in self._queued:  # else abandoned: its outcome is dropped
                self._end(run)
                run.entry.finish(run.ok, run.value if run.ok else job_error(run.value))

    # -- in the pool's threads ------------------------------------------------------------

    def _thread_main(self, started: asyncio.Future[BaseException | None]) -> None:
        """A pool thread: run the initializer, then queued jobs until told to exit."""
        error: BaseException | None = None
        try:
            if self._initializer is not None:
                self._initializer()
        except BaseException as exc:  # reported by start()
            error = exc
        self._call_loop(_resolve, started, error)
        if error is not None:
            return
        ident = threading.get_ident()
        while (run := self._jobs.get()) is not None:
            if not run.take(ident):
                self._report(run)  # cancelled or given up before it started
                continue
            self._run_job(run, ident)

    def _run_job(self, run: _ThreadRun, ident: int) -> None:
        job = run.entry.job
        if not job.may_start():
            run.value = NotStarted()
            self._report(run)
            return
        if job.on_start is not None:
            try:
                job.on_start(ident)
            except Exception:
                logger.exception("on_start callback failed")
        if job.time_limit is not None or job.soft_time_limit is not None:
            self._call_loop(self._arm_limits, run)
        self._work(run)
        self._report(run)

    def _call_loop(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            pass  # the loop is closed: an abandoned thread ended after the worker stopped

    def _report(self, run: _ThreadRun) -> None:
        """Hand a finished job to the loop, waking it only if it is not due to look anyway."""
        self._finished.append(run)
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        self._call_loop(self._drain_finished)

    def _work(self, run: _ThreadRun) -> None:
        """Run ``fn`` and record its outcome; interruptions never escape (see _ThreadRun)."""
        done = False
        while True:
            try:
                if not done:
                    done = True
                    self._call(run)
                run.leave()
                return
            except _INTERRUPTIONS as exc:
                # Landed outside fn (just before or after it); at most one more can come.
                if not run.ok and run.value is None:
                    run.ok, run.value = False, exc

    def _call(self, run: _ThreadRun) -> None:
        entry = run.entry
        try:
            early = run.enter()
            if early is not None:
                raise early(_interruption_message(early, entry.job))
            context = entry.context if entry.context is not None else contextvars.Context()
            run.ok, run.value = True, context.run(self._fn, entry.job.payload)
        except BaseException as exc:
            run.ok, run.value = False, exc


def _resolve(future: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not future.done():
        future.set_result(error)


def _interruption_message(exc_type: type[BaseException], job: Job) -> str:
    """The message of a time limit that passed before the job's thread could start it."""
    if exc_type is SoftTimeLimitExceeded:
        return f"Soft time limit ({job.soft_time_limit}s) exceeded"
    return f"Time limit ({job.time_limit}s) exceeded"
