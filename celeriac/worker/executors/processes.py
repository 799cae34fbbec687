"""A pool of forked child processes driven from asyncio (Celery's "prefork" pool).

Each child is forked from the worker (which has already imported the user's app),
owns one duplex pipe and runs one job at a time in a plain blocking loop: receive
a pickled ``(payload, soft_limit)``, call ``fn(payload)``, send one pickled outcome
back. The parent never blocks on a child: it reads outcomes with ``loop.add_reader``
and learns of deaths from a pidfd (Linux; elsewhere pipe EOF + ``waitpid`` polling).

* Soft limit: ``setitimer(ITIMER_REAL)`` in the child, whose SIGALRM handler raises
  :class:`~celeriac.exceptions.SoftTimeLimitExceeded` inside ``fn`` (blocking system
  calls such as ``time.sleep`` are interrupted too).
* Hard limit: the parent SIGKILLs the child at the deadline; ``submit`` raises
  :class:`~celeriac.exceptions.TimeLimitExceeded`; a fresh child replaces it.
* A child dying mid-job makes ``submit`` raise
  :class:`~celeriac.exceptions.WorkerLostError`; it is replaced.
* Cancelling a ``submit`` does not stop its job (time limits still apply; the result
  is dropped). To terminate a job, signal the pid given to ``Job.on_start``.
* A result is read in one go once its first bytes arrive, so a multi-megabyte
  result briefly blocks the loop while the child writes it.
* ``send_note(obj)``, called inside a job, sends ``obj`` to the parent's ``on_note``
  callback ahead of the job's outcome, in order (the worker routes a task's
  ``update_state`` through it, so it is written after the worker's STARTED).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import gc
import logging
import os
import pickle
import resource
import signal
import sys
import traceback
from collections import deque
from collections.abc import Callable
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any, NoReturn

from celeriac.exceptions import (
    SerializationError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from celeriac.worker.executors.base import (
    Done,
    ExecutorStopped,
    Job,
    JobQueue,
    PendingJob,
    RunningCount,
    job_error,
    submit_and_wait,
)

__all__ = ["ProcessExecutor", "die_with_parent", "send_note"]

logger = logging.getLogger(__name__)

# Message kinds sent by a child to the parent.
_READY = "ready"
_INIT_FAILED = "init-failed"
_OK = "ok"
_ERROR = "error"
_NOTE = "note"
_RETIRE = "retire"  # sent before an outcome: the child exits after it (memory limit)

_EXIT_MESSAGE = pickle.dumps(None)
_EXIT_GRACE = 10.0  # seconds children get to exit after stop(wait=True) asks them to
_RESPAWN_DELAY = 1.0  # pause before replacing a child whose initializer failed
_REAP_POLL = 0.01  # waitpid polling interval, only where pidfds are unavailable

# Signals whose parent handlers make no sense in a child; SIGINT is ignored instead
# (the parent handles Ctrl-C and decides how children stop).
_RESET_SIGNALS = ("SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGCHLD")


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)


def _error_message(exc: BaseException) -> bytes:
    """Pickle ``exc`` as an error outcome, or a RuntimeError naming it if it won't round-trip."""
    exc.add_note(f"(raised in executor child process {os.getpid()})\n{traceback.format_exc()}")
    try:
        data = _dumps((_ERROR, exc))
        pickle.loads(data)  # many exception classes pickle but fail to unpickle
        return data
    except Exception:
        cls = type(exc)
        return _dumps((_ERROR, RuntimeError(f"{cls.__module__}.{cls.__qualname__}: {exc}")))


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "unknown exit status"
    if code < 0 and -code in signal.valid_signals():
        return f"signal {-code} ({signal.Signals(-code).name})"
    return f"exitcode {code}" if code >= 0 else f"signal {-code}"


_note_conn: Connection | None = None  # set in a child: its pipe to the parent


def send_note(obj: Any) -> None:
    """In a pool child, send ``obj`` to the parent's ``on_note`` (before the outcome).

    Raises RuntimeError outside a pool child.
    """
    if _note_conn is None:
        raise RuntimeError("send_note() is only available inside a process-pool job")
    _note_conn.send_bytes(_dumps((_NOTE, obj)))


class _ChildLoop:
    """The job loop of a forked child: receive, run ``fn``, send the outcome, repeat."""

    def __init__(
        self,
        conn: Connection,
        fn: Callable[[Any], Any],
        max_tasks: int | None,
        max_memory: int | None = None,
    ):
        self._conn = conn
        self._fn = fn
        self._max_tasks = max_tasks
        self._max_memory = max_memory
        self._soft_armed = False
        self._soft_limit: float | None = None

    def on_alarm(self, signum: int, frame: FrameType | None) -> None:
        """SIGALRM handler: raise SoftTimeLimitExceeded inside ``fn`` (only once per job)."""
        if self._soft_armed:
            self._soft_armed = False
            raise SoftTimeLimitExceeded(f"Soft time limit ({self._soft_limit}s) exceeded")

    def run(self) -> int:
        """Serve jobs until told to exit, the parent goes away or max_tasks is reached."""
        done = 0
        while self._max_tasks is None or done < self._max_tasks:
            try:
                data = self._conn.recv_bytes()
            except (EOFError, OSError):
                return 0  # the parent is gone: nobody wants our results any more
            if data == _EXIT_MESSAGE:
                return 0
            reply = self._handle(data)
            rss = self._over_memory()
            if rss is not None:
                # Told before the outcome, so that the parent never gives us another job.
                self._conn.send_bytes(_dumps((_RETIRE, rss)))
                self._conn.send_bytes(reply)
                return 0
            self._conn.send_bytes(reply)
            done += 1
        return 0

    def _over_memory(self) -> int | None:
        """Peak resident memory in KiB when above ``max_memory`` (Celery's rule), else None."""
        if self._max_memory is None:
            return None
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return rss if rss > self._max_memory else None

    def _handle(self, data: bytes) -> bytes:
        try:
            payload, soft = pickle.loads(data)
            result = self._call(payload, soft)
        except Exception as exc:
            return _error_message(exc)
        try:
            return _dumps((_OK, result))
        except Exception as exc:
            return _error_message(SerializationError(f"cannot pickle the result: {exc!r}"))

    def _call(self, payload: Any, soft: float | None) -> Any:
        if soft is None:
            return self._fn(payload)
        self._soft_limit = soft
        self._soft_armed = True
        signal.setitimer(signal.ITIMER_REAL, soft)
        try:
            return self._fn(payload)
        finally:
            # If the alarm fires right here, SoftTimeLimitExceeded replaces the result;
            # the job did reach its soft limit, so that outcome is still truthful.
            self._soft_armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)


def _child_main(
    conn: Connection,
    inherited_fds: list[int],
    fn: Callable[[Any], Any],
    initializer: Callable[[], None] | None,
    max_tasks: int | None,
    max_memory: int | None = None,
) -> int:
    """Body of a freshly forked child; returns its exit code."""
    global _note_conn
    _note_conn = conn
    # The parent's loop may have set a wakeup fd: our signals must not wake it.
    signal.set_wakeup_fd(-1)
    for name in _RESET_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for fd in inherited_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    if initializer is not None:
        try:
            initializer()
        except Exception:
            conn.send_bytes(_dumps((_INIT_FAILED, traceback.format_exc())))
            return 1
    conn.send_bytes(_dumps((_READY, None)))
    child_loop = _ChildLoop(conn, fn, max_tasks, max_memory)
    signal.signal(signal.SIGALRM, child_loop.on_alarm)
    return child_loop.run()


def die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this (forked) process when its parent dies.

    A worker killed with SIGKILL gets its tasks redelivered to another worker; an
    orphaned child finishing the same task meanwhile would run it twice.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: children outlive a killed parent
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


class _State(enum.Enum):
    STARTING = "starting"  # forked, initializer running
    IDLE = "idle"  # waiting for a job
    BUSY = "busy"  # running a job
    RETIRING = "retiring"  # will exit (or was killed); waiting to be reaped
    DEAD = "dead"  # reaped


class _Child:
    """The parent's view of one child process."""

    def __init__(
        self, pid: int, conn: Connection, pidfd: int | None, loop: asyncio.AbstractEventLoop
    ):
        self.pid = pid
        self.conn = conn
        self.pidfd = pidfd
        self.state = _State.STARTING
        self.reading = True
        self.ready: asyncio.Future[None] = loop.create_future()
        self.exited: asyncio.Future[int | None] = loop.create_future()
        self.entry: PendingJob | None = None  # the running job
        self.timer: asyncio.TimerHandle | None = None  # the running job's hard limit
        self.job_no = 0
        self.jobs_done = 0
        self.init_error: str | None = None
        self.retire = False  # exits after its running job (over max_memory_per_child)


class ProcessExecutor:
    """Runs ``fn(payload)`` in ``concurrency`` forked children, one job per child at a time.

    ``max_tasks_per_child`` recycles a child after that many jobs, ``max_memory_per_child``
    once its peak resident memory exceeds that many KiB (after the job that passed it, as
    Celery's prefork pool does); ``initializer``
    runs once in every new child before its first job. A failing initializer
    makes ``start()`` raise; later it is logged and the child retried after a pause.
    """

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        concurrency: int,
        max_tasks_per_child: int | None = None,
        initializer: Callable[[], None] | None = None,
        on_note: Callable[[Any], None] | None = None,
        max_memory_per_child: int | None = None,
        before_spawn: Callable[[ProcessExecutor], None] | None = None,
        finalizer: Callable[[int], None] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if max_tasks_per_child is not None and max_tasks_per_child < 1:
            raise ValueError("max_tasks_per_child must be at least 1 (or None)")
        self._fn = fn
        self._on_note = on_note
        self._concurrency = concurrency
        self._max_tasks = max_tasks_per_child
        self._max_memory = max_memory_per_child or None
        self._initializer = initializer
        self._before_spawn = before_spawn
        self._finalizer = finalizer
        self._started = False
        self._children: list[_Child] = []
        self._idle: deque[_Child] = deque()
        self._queue = JobQueue()
        self._running = RunningCount()
        self._respawns: set[asyncio.TimerHandle] = set()
        self._starting = False
        self._stopped = False
        self._excess = 0  # children to retire as soon as they are idle (shrink)

    @property
    def capacity(self) -> int:
        """Number of children, i.e. of jobs that run at once."""
        return self._concurrency

    def resize(self, size: int) -> None:
        """Run ``size`` children from now on (``--autoscale``), through :meth:`grow` and
        :meth:`shrink` (idle extra children leave at once, busy ones after their job)."""
        if size < 1:
            raise ValueError("an executor needs at least one child")
        if size > self._concurrency:
            self.grow(size - self._concurrency)
        elif size < self._concurrency:
            self.shrink(self._concurrency - size)

    @property
    def pids(self) -> list[int]:
        """Pids of the current (not yet reaped) children."""
        return [child.pid for child in self._children]

    def grow(self, n: int) -> None:
        """Add ``n`` children (remote control's ``pool_grow``); they take jobs once ready."""
        if n < 1 or not self._started or self._stopped:
            raise ValueError("grow: n must be at least 1, on a running pool")
        self._concurrency += n
        for _ in range(n):
            self._spawn()

    def shrink(self, n: int) -> int:
        """Retire up to ``n`` children, never the last one: idle ones now, busy ones when
        their job ends (remote control's ``pool_shrink``). Returns how many will go."""
        n = min(n, self._concurrency - 1)
        if n < 1 or not self._started or self._stopped:
            return 0
        self._concurrency -= n
        left = n
        for child in list(self._idle):
            if left == 0:
                break
            self._ask_to_exit(child)
            left -= 1
        self._excess += left
        return n

    def pid_running(self, entry: PendingJob) -> int | None:
        """The pid of the child running ``entry``, or None when no child runs it."""
        for child in self._children:
            if child.entry is entry:
                return child.pid
        return None

    async def start(self) -> None:
        """Fork the children and wait until each has run its initializer."""
        if self._started:
            raise RuntimeError("ProcessExecutor.start() called twice")
        self._started = self._starting = True
        try:
            children = [self._spawn() for _ in range(self._concurrency)]
            await asyncio.gather(*(child.ready for child in children))
        except BaseException:
            await self.stop(wait=False)
            raise
        finally:
            self._starting = False

    def run(self, job: Job, done: Done) -> PendingJob:
        """Run ``job`` in the next free child; ``done`` gets ``fn(job.payload)``'s outcome."""
        entry = PendingJob(job, done)
        if not self._started or self._stopped:
            entry.finish(False, ExecutorStopped())
            return entry
        try:
            entry.data = _dumps((job.payload, job.soft_time_limit))
        except Exception as exc:
            entry.finish(False, SerializationError(f"cannot pickle the job's payload: {exc!r}"))
            return entry
        self._queue.push(entry)
        self._dispatch_queued()
        return entry

    async def submit(self, job: Job) -> Any:
        """Run ``job`` in the next free child and return ``fn(job.payload)``."""
        return await submit_and_wait(self.run, job)

    async def stop(self, *, wait: bool) -> None:
        """Stop the pool; ``wait=True`` lets running jobs finish first, else SIGKILLs all."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.fail_all()
        for handle in self._respawns:
            handle.cancel()
        self._respawns.clear()
        if wait:
            await self._running.wait_zero()
            for child in list(self._children):
                self._ask_to_exit(child)
            pending = [child.exited for child in self._children]
            if pending:
                await asyncio.wait(pending, timeout=_EXIT_GRACE)
        for child in list(self._children):
            self._kill(child, WorkerLostError("executor stopped: child killed"))
        await asyncio.gather(*(child.exited for child in list(self._children)))

    # -- running jobs -------------------------------------------------------------------

    def _dispatch_queued(self) -> None:
        """Hand queued jobs to idle children (called whenever either appears)."""
        while self._idle and not self._stopped:
            entry = self._queue.pop()
            if entry is None:
                return
            self._dispatch(self._idle.popleft(), entry)

    def _dispatch(self, child: _Child, entry: PendingJob) -> None:
        try:
            child.conn.send_bytes(entry.data)
        except OSError:
            # It died while idle; its exit handler replaces it. The job never started.
            child.state = _State.RETIRING
            self._queue.push_front(entry)
            return
        job = entry.job
        child.state = _State.BUSY
        child.entry = entry
        child.job_no += 1
        self._running.add(1)
        if job.time_limit is not None:
            child.timer = asyncio.get_running_loop().call_later(
                job.time_limit, self._on_hard_limit, child, child.job_no, job.time_limit
            )
        if job.on_start is not None:
            try:
                job.on_start(child.pid)
            except Exception:
                logger.exception("on_start callback failed")

    def _child_free(self, child: _Child) -> None:
        child.state = _State.IDLE
        if self._excess > 0:  # the pool was shrunk while this child was busy
            self._excess -= 1
            self._ask_to_exit(child)
            return
        self._idle.append(child)
        self._dispatch_queued()

    def _finish_job(self, child: _Child, ok: bool, value: Any) -> None:
        entry = child.entry
        if entry is None:
            return  # killed at its hard limit; a late outcome is dropped
        self._end_job(child)
        child.jobs_done += 1
        if child.state is not _State.BUSY:
            pass  # already reaped (outcome drained from its pipe after it exited)
        elif self._max_tasks is not None and child.jobs_done >= self._max_tasks:
            child.state = _State.RETIRING  # it exits by itself; replaced when reaped
        elif child.retire:
            child.state = _State.RETIRING  # over its memory limit, or the pool shrank
            with contextlib.suppress(OSError):  # already gone (memory limit): nothing to say
                child.conn.send_bytes(_EXIT_MESSAGE)
        else:
            self._child_free(child)
        entry.finish(ok, value if ok else job_error(value))

    def _end_job(self, child: _Child) -> None:
        child.entry = None
        if child.timer is not None:
            child.timer.cancel()
            child.timer = None
        self._running.add(-1)

    def _fail_job(self, child: _Child, reason: BaseException) -> None:
        """End ``child``'s running job (if any) with ``reason``."""
        entry = child.entry
        if entry is not None:
            self._end_job(child)
            entry.finish(False, reason)

    def _on_hard_limit(self, child: _Child, job_no: int, limit: float) -> None:
        if child.job_no == job_no and child.entry is not None:
            self._kill(child, TimeLimitExceeded(f"Time limit ({limit}s) exceeded"))

    def _kill(self, child: _Child, reason: BaseException) -> None:
        """SIGKILL ``child``; its running job (if any) fails with ``reason`` right away."""
        if child.state is _State.DEAD:
            return
        self._fail_job(child, reason)
        self._set_retiring(child)
        try:
            if child.pidfd is not None:
                signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
            else:
                os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _ask_to_exit(self, child: _Child) -> None:
        if child.state in (_State.IDLE, _State.STARTING):
            self._set_retiring(child)
            try:
                child.conn.send_bytes(_EXIT_MESSAGE)
            except OSError:
                pass  # already gone; reaped by the exit handler

    def _set_retiring(self, child: _Child) -> None:
        child.state = _State.RETIRING
        if child in self._idle:
            self._idle.remove(child)

    # -- children's lifecycle -------------------------------------------------------------

    def _spawn(self) -> _Child:
        loop = asyncio.get_running_loop()
        if self._before_spawn is not None:
            self._before_spawn(self)
        parent_conn, child_conn = Pipe(duplex=True)
        inherited = [parent_conn.fileno()]
        for other in self._children:
            inherited.append(other.conn.fileno())
            if other.pidfd is not None:
                inherited.append(other.pidfd)
        _flush_stdio()  # or buffered output would be written twice
        # Objects alive now are shared copy-on-write with the child; the collector
        # writing to their headers would copy their pages into every child.
        gc.freeze()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (covered by the tests' children)
            die_with_parent(parent_pid)
            self._become_child(child_conn, inherited)
        child_conn.close()
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except (AttributeError, OSError):
            pidfd = None
        child = _Child(pid, parent_conn, pidfd, loop)
        self._children.append(child)
        loop.add_reader(parent_conn.fileno(), self._on_readable, child)
        if pidfd is not None:
            loop.add_reader(pidfd, self._check_exit, child)
        return child

    def _become_child(self, conn: Connection, inherited: list[int]) -> NoReturn:
        """Run the child's job loop and exit; never returns to the parent's code."""
        code = 1
        try:
            code = _child_main(
                conn, inherited, self._fn, self._initializer, self._max_tasks, self._max_memory
            )
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BaseException:
            traceback.print_exc()
        finally:
            if self._finalizer is not None:
                try:
                    self._finalizer(code)
                except BaseException:
                    traceback.print_exc()
            _flush_stdio()
            os._exit(code)

    def _respawn(self) -> None:
        if self._stopped:
            return
        try:
            self._spawn()
        except OSError:
            logger.exception("could not fork an executor child; retrying")
            self._schedule_respawn()

    def _schedule_respawn(self) -> None:
        loop = asyncio.get_running_loop()
        # Forget handles that already fired, so repeated failures don't pile them up.
        self._respawns = {handle for handle in self._respawns if handle.when() > loop.time()}
        self._respawns.add(loop.call_later(_RESPAWN_DELAY, self._respawn))

    def _on_readable(self, child: _Child) -> None:
        try:
            data = child.conn.recv_bytes()
        except (EOFError, OSError):
            self._stop_reading(child)
            self._check_exit(child)
            return
        self._on_message(child, data)

    def _on_message(self, child: _Child, data: bytes) -> None:
        try:
            kind, value = pickle.loads(data)
        except Exception as exc:
            kind = _ERROR
            value = SerializationError(f"cannot unpickle the outcome of child {child.pid}: {exc!r}")
        if kind == _READY:
            if child.state is _State.STARTING:  # else it was asked to exit meanwhile
                child.ready.set_result(None)
                self._child_free(child)
        elif kind == _INIT_FAILED:
            child.init_error = value
        elif kind == _NOTE:
            self._note(value)
        elif kind == _RETIRE:
            child.retire = True
            logger.info(
                "child %s exceeds max_memory_per_child (%s KiB > %s KiB): replaced after its task",
                child.pid,
                value,
                self._max_memory,
            )
        else:
            self._finish_job(child, kind == _OK, value)

    def _note(self, value: Any) -> None:
        if self._on_note is None:
            return
        try:
            self._on_note(value)
        except Exception:
            logger.exception("on_note callback failed")

    def _stop_reading(self, child: _Child) -> None:
        if child.reading:
            child.reading = False
            asyncio.get_running_loop().remove_reader(child.conn.fileno())

    def _check_exit(self, child: _Child) -> None:
        """Reap ``child`` if it has exited (called on pidfd readiness or pipe EOF)."""
        if child.state is _State.DEAD:
            return
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:  # somebody else reaped it
            self._on_exit(child, None)
            return
        if pid != 0:
            self._on_exit(child, os.waitstatus_to_exitcode(status))
        elif child.pidfd is None:
            asyncio.get_running_loop().call_later(_REAP_POLL, self._check_exit, child)

    def _on_exit(self, child: _Child, code: int | None) -> None:
        never_ready = child.state is _State.STARTING
        child.state = _State.DEAD  # first, so that draining cannot make it idle again
        self._drain(child)  # outcomes written just before exiting
        self._forget(child)
        why = f"Worker exited prematurely: {_describe_exit(code)} (pid {child.pid})"
        self._fail_job(child, WorkerLostError(why))
        if never_ready:
            self._on_init_failure(child, code)
        child.exited.set_result(code)
        if not self._stopped and not never_ready and len(self._children) < self._concurrency:
            self._respawn()

    def _on_init_failure(self, child: _Child, code: int | None) -> None:
        why = child.init_error or f"child exited during start-up: {_describe_exit(code)}"
        if self._starting:
            child.ready.set_exception(RuntimeError(f"executor child failed to start:\n{why}"))
            return
        child.ready.cancel()
        if not self._stopped:
            logger.error("executor child %s failed to start; retrying:\n%s", child.pid, why)
            self._schedule_respawn()

    def _drain(self, child: _Child) -> None:
        while child.reading:
            try:
                if not child.conn.poll():
                    return
                data = child.conn.recv_bytes()
            except (EOFError, OSError):
                return
            self._on_message(child, data)

    def _forget(self, child: _Child) -> None:
        self._stop_reading(child)
        if child.pidfd is not None:
            asyncio.get_running_loop().remove_reader(child.pidfd)
            os.close(child.pidfd)
            child.pidfd = None
        child.conn.close()
        if child in self._children:
            self._children.remove(child)
        if child in self._idle:
            self._idle.remove(child)
