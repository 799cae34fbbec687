"""A thread pool executor (Celery's "threads" pool; "solo" is this with one thread).

Each of the ``concurrency`` threads waits on its own inbox; the event loop hands a job
to an idle thread, so the job starts at once and ``on_start`` is called right there
with that thread's ident. Threads put finished jobs on one shared list and wake the
event loop only when it is not already due to look at that list: under load a batch
of outcomes costs one wake-up, not one each. Jobs run inside a copy of the
submitter's :mod:`contextvars` context.

Time limits, and what threads cannot do:

* soft: at the deadline :class:`~celeriac.exceptions.SoftTimeLimitExceeded` is raised
  asynchronously in the job's thread (``PyThreadState_SetAsyncExc``). It lands at the
  next bytecode boundary, so a thread blocked in a C call (``time.sleep``, a socket
  read, a lock wait) sees it only when that call returns.
* hard: at the deadline ``submit`` raises :class:`~celeriac.exceptions.TimeLimitExceeded`
  and the thread is abandoned: a thread cannot be killed. As a best effort,
  TimeLimitExceeded is also raised asynchronously in it (same caveat as above). The
  slot is given back only when the thread really returns, so capacity is never
  over-committed; a thread stuck for ever keeps its slot for ever (threads are
  daemons, so it does not keep the process from exiting).

``stop(wait=False)`` cannot kill threads either: running jobs' ``submit`` raise
:class:`~celeriac.exceptions.WorkerLostError` at once and their threads are abandoned.
Cancelling a ``submit`` leaves its job running; the slot comes back when it ends.
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
    PendingJob,
    RunningCount,
    Slots,
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
        "value",
        "worker",
    )

    def __init__(self, entry: PendingJob, worker: _Worker) -> None:
        self.entry = entry
        self.worker = worker
        self.ident = worker.ident
        self.lock = threading.Lock()
        self.in_fn = False
        self.left = False
        self.interrupted = False
        self.pending: type[BaseException] | None = None
        self.abandoned = False
        self.soft_timer: asyncio.TimerHandle | None = None
        self.hard_timer: asyncio.TimerHandle | None = None
        self.ok = False
        self.value: Any = None

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


class _Worker:
    """One pool thread and its inbox of jobs (``None`` tells it to exit)."""

    def __init__(self, pool: ThreadExecutor, index: int) -> None:
        self.inbox: queue.SimpleQueue[_ThreadRun | None] = queue.SimpleQueue()
        self.thread = threading.Thread(
            target=pool.thread_main, args=(self,), name=f"celeriac-worker-{index}", daemon=True
        )
        self.ident = 0
        self.init_error: BaseException | None = None


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
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._fn = fn
        self._concurrency = concurrency
        self._initializer = initializer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []
        self._idle: deque[_Worker] = deque()
        self._slots = Slots(concurrency, self._dispatch)
        self._running = RunningCount()
        self._runs: set[_ThreadRun] = set()
        self._finished: deque[_ThreadRun] = deque()
        self._wake_lock = threading.Lock()
        self._wake_pending = False
        self._starting: list[asyncio.Future[None]] = []
        self._stopped = False

    @property
    def capacity(self) -> int:
        """Number of threads, i.e. of jobs that run at once."""
        return self._concurrency

    async def start(self) -> None:
        """Start the threads and run the initializer in each."""
        if self._loop is not None:
            raise RuntimeError("ThreadExecutor.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._workers = [_Worker(self, index) for index in range(self._concurrency)]
        self._starting = [self._loop.create_future() for _ in self._workers]
        for worker in self._workers:
            worker.thread.start()
        await asyncio.gather(*self._starting)
        failed = next((w.init_error for w in self._workers if w.init_error), None)
        if failed is not None:
            await self.stop(wait=False)
            raise RuntimeError(f"executor thread failed to start: {failed!r}") from failed
        self._idle.extend(self._workers)

    def run(self, job: Job, done: Done) -> PendingJob:
        """Run ``job`` in the next free thread; ``done`` gets its outcome in the loop."""
        entry = PendingJob(job, done, context=contextvars.copy_context())
        if self._loop is None or self._stopped:
            entry.finish(False, ExecutorStopped())
            return entry
        self._slots.submit(entry)
        return entry

    async def submit(self, job: Job) -> Any:
        """Run ``job`` in the next free thread and return ``fn(job.payload)``."""
        return await submit_and_wait(self.run, job)

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
        for worker in self._workers:
            worker.inbox.put(None)  # busy (abandoned) threads exit after their job

    # -- in the event loop's thread -------------------------------------------------------

    def _dispatch(self, entry: PendingJob) -> bool:
        if self._loop is None or not self._idle:  # cannot happen: a free slot has a thread
            entry.finish(False, RuntimeError("no idle executor thread for a free slot"))
            return False
        worker = self._idle.popleft()
        run = _ThreadRun(entry, worker)
        self._runs.add(run)
        self._running.add(1)
        job = entry.job
        if job.time_limit is not None:
            run.hard_timer = self._loop.call_later(
                job.time_limit, self._on_hard_limit, run, job.time_limit
            )
        if job.soft_time_limit is not None:
            run.soft_timer = self._loop.call_later(
                job.soft_time_limit, run.interrupt, SoftTimeLimitExceeded
            )
        worker.inbox.put(run)
        if job.on_start is not None:
            try:
                job.on_start(worker.ident)
            except Exception:
                logger.exception("on_start callback failed")
        return True

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
        run.entry.finish(False, reason)
        return True

    def _drain_finished(self) -> None:
        """Loop callback: settle every job the threads have finished so far."""
        with self._wake_lock:
            self._wake_pending = False
        finished = self._finished
        while finished:
            self._on_done(finished.popleft())

    def _on_done(self, run: _ThreadRun) -> None:
        run.cancel_timers()
        self._runs.discard(run)
        if not self._stopped:
            self._idle.append(run.worker)
        self._slots.release()
        if run.abandoned:
            return
        self._running.add(-1)
        run.entry.finish(run.ok, run.value if run.ok else job_error(run.value))

    # -- in the pool's threads ------------------------------------------------------------

    def thread_main(self, worker: _Worker) -> None:
        """A pool thread: run the initializer, then jobs from the inbox until told to exit."""
        worker.ident = threading.get_ident()
        try:
            if self._initializer is not None:
                self._initializer()
        except BaseException as exc:  # reported by start()
            worker.init_error = exc
        self._started_one(self._workers.index(worker))
        if worker.init_error is not None:
            return
        while (run := worker.inbox.get()) is not None:
            self._work(run)
            self._report(run)

    def _started_one(self, index: int) -> None:
        """Tell start() that thread ``index`` has run its initializer (or failed to)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(_resolve, self._starting[index])

    def _report(self, run: _ThreadRun) -> None:
        """Hand a finished job to the loop, waking it only if it is not due to look anyway."""
        self._finished.append(run)
        with self._wake_lock:
            if self._wake_pending:
                return
            self._wake_pending = True
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._drain_finished)
        except RuntimeError:
            pass  # the loop is closed: an abandoned thread ended after the worker stopped

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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _interruption_message(exc_type: type[BaseException], job: Job) -> str:
    """The message of a time limit that passed before the job's thread could start it."""
    if exc_type is SoftTimeLimitExceeded:
        return f"Soft time limit ({job.soft_time_limit}s) exceeded"
    return f"Time limit ({job.time_limit}s) exceeded"
