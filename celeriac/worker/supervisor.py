"""``celeriac worker --loops N``: N complete workers in N processes, one supervisor.

One event loop runs on one core. A worker whose own loop is the busy part (``async
def`` tasks, or a prefork parent feeding fast tasks) scales past one core only by
running more loops: this forks ``N`` ordinary :class:`~celeriac.worker.worker.Worker`
processes, each with its own broker connection, pool and prefetch window (so ``-c``
and ``--async-concurrency`` apply per process), and supervises them:

* SIGTERM, SIGINT and SIGQUIT are passed on to every worker, which shuts down as it
  would alone (a second SIGINT/SIGTERM makes it cold); the supervisor exits when all
  have, with the worst exit code. Workers run in their own process groups, so a
  terminal's Ctrl-C reaches them once, through the supervisor; under systemd use
  ``KillMode=mixed`` for the same reason.
* A worker that dies otherwise is replaced (after a pause if it died young, so a
  worker that cannot start does not spin). Its unacknowledged messages come back
  through the transport's own recovery, as for any lost worker.
* Workers die with the supervisor (``PR_SET_PDEATHSIG``), so a supervisor killed
  with SIGKILL leaves no orphan running tasks that are also redelivered.

Worker ``i`` is named ``<name>-<i>@<host>`` (``i`` from 1); only the first runs an
embedded beat (``-B``), although several would be safe.

Slots (``-P slots``: :mod:`celeriac.worker.slots`, :func:`run_slots`) are the same supervisor
over one-thread workers, with a :class:`~celeriac.worker.slots.SlotBoard` shared with them:
a slot that exits 0 while the supervisor is not stopping has retired (its limits) and is
replaced at once; one that dies has the task it was running moved to the board's lost
list, so that task fails with ``WorkerLostError`` when its message comes back.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn

from celeriac.cli.errors import USER_ERRORS, as_click_error
from celeriac.engines import preload_engines
from celeriac.worker.executors.processes import die_with_parent
from celeriac.worker.slots import Slot, SlotBoard
from celeriac.worker.worker import STOP_SIGNALS, Worker, WorkerOptions, expand_hostname

__all__ = ["run_loops", "run_slots"]

logger = logging.getLogger("celeriac.worker")

_YOUNG = 5.0  # seconds: a worker dying sooner than this is restarted after a pause
_RESTART_PAUSE = 1.0


def worker_options(options: WorkerOptions, index: int, first: bool = True) -> WorkerOptions:
    """The options of worker ``index`` (1-based) among several; ``first``: not a replacement
    (only the first start of worker 1 prints the banner)."""
    name, _, host = expand_hostname(options.hostname).partition("@")
    return replace(
        options,
        hostname=f"{name}-{index}@{host}",
        beat=options.beat and index == 1,
        banner=options.banner and index == 1 and first,
    )


class _Supervisor:
    def __init__(
        self,
        make_worker: Callable[[int, bool], Worker],
        count: int,
        board: SlotBoard | None = None,
    ) -> None:
        self.make_worker = make_worker
        self.count = count
        self.board = board
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.started: set[int] = set()  # indexes started at least once
        self.stopping = False
        self.exit_code = 0

    def run(self) -> int:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._forward)
        # What the supervisor imported is shared with the forked workers until written to;
        # the collector would write to every object's header, so it leaves these alone.
        gc.freeze()
        for index in range(1, self.count + 1):
            pid = self._spawn(index)
            if index == 1 and self.board is not None:
                failed = self._wait_until_ready(pid)
                if failed is not None:
                    return failed
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self._reap(pid, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def _wait_until_ready(self, pid: int) -> int | None:
        """Let the first slot start alone: a wrong setting or an unreachable broker is then
        reported once, by it, and ends the worker with its exit code, as a single worker
        would, instead of every slot failing and being restarted for ever."""
        assert self.board is not None
        while not self.board.is_ready(1) and not self.stopping:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                self.children.pop(pid, None)
                return abs(os.waitstatus_to_exitcode(status)) or 1
            time.sleep(0.01)
        return None

    def _spawn(self, index: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        first = index not in self.started
        self.started.add(index)
        # The forwarded signals wait while forking: the child must not run the supervisor's
        # handler (it would pass the signal on to its siblings and go on working), and the
        # supervisor must know the child before it forwards anything.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child (covered by the tests' children)
                self._become_worker(index, first, parent)
            self.children[pid] = (index, time.monotonic())
            told = self.stopping  # a signal handled before forking: this one must hear it too
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # (one pending now reaches it)
        if told:
            os.kill(pid, signal.SIGTERM)
        return pid

    def _become_worker(self, index: int, first: bool, parent: int) -> NoReturn:  # pragma: no cover
        """The forked child's life: run worker ``index`` and exit with its code. The forwarded
        signals stay blocked until the worker has its own handlers (it unblocks them), so a
        stop sent while it starts up is a warm shutdown once it can have one."""
        code = 1
        try:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            # Its own process group: a Ctrl-C in the terminal reaches the supervisor
            # only, which passes it on once (twice would mean a cold shutdown).
            os.setpgid(0, 0)
            die_with_parent(parent)
            code = _run_worker(lambda: self.make_worker(index, first))
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self, pid: int, code: int) -> None:
        entry = self.children.pop(pid, None)
        if entry is None:
            return
        index, started = entry
        if self.stopping:
            self.exit_code = max(self.exit_code, abs(code))
            return
        if self.board is not None and code == 0:
            logger.info("slot %d (pid %d) retired; starting a new one", index, pid)
            self._spawn(index)
            return
        lost = self.board.lose(index, _death(code)) if self.board is not None else None
        if lost is not None:
            logger.error(
                "slot %d (pid %d) died (%s) while running task %s, which is recorded as "
                "WorkerLostError when its message comes back; starting a new slot",
                index,
                pid,
                _death(code),
                lost,
            )
        else:
            logger.error("worker %d (pid %d) exited with code %d; restarting it", index, pid, code)
        # A slot that died running a task had started fine: no pause, as for a child of prefork.
        if lost is None and time.monotonic() - started < _YOUNG:
            time.sleep(_RESTART_PAUSE)
        if not self.stopping:
            self._spawn(index)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass


def _run_worker(make: Callable[[], Worker]) -> int:  # pragma: no cover - in the forked child
    """Build and run a forked worker; a user's error (a setting, the broker) is one
    ``Error:`` line, as the command prints it for a worker of its own."""
    try:
        return make().start()
    except USER_ERRORS as exc:
        as_click_error(exc).show()
        return 1


def _death(code: int) -> str:
    """How a child ended, from its exit code (negative: the signal that killed it)."""
    if code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def run_slots(app: Any, options: WorkerOptions, count: int) -> int:
    """Run ``count`` slots of ``app``: one-thread workers, one process per slot."""
    preload_engines(app)
    board = SlotBoard(count)

    def make_worker(index: int, first: bool) -> Worker:
        own = worker_options(options, index, first)
        if count == 1:  # a single slot keeps the node's own name (-n), as one worker would
            own = replace(own, hostname=options.hostname)
        return Worker(app, own, slot=Slot(board, index))

    return _Supervisor(make_worker, count, board).run()


def run_loops(app: Any, options: WorkerOptions, count: int) -> int:
    """Run ``count`` workers of ``app`` in their own processes until they stop."""
    preload_engines(app)

    def make_worker(index: int, first: bool) -> Worker:
        return Worker(app, worker_options(options, index, first))

    return _Supervisor(make_worker, count).run()
