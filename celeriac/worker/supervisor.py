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
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import FrameType

from celeriac.worker.executors.processes import die_with_parent
from celeriac.worker.worker import Worker, WorkerOptions, expand_hostname

__all__ = ["run_loops"]

logger = logging.getLogger("celeriac.worker")

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_YOUNG = 5.0  # seconds: a worker dying sooner than this is restarted after a pause
_RESTART_PAUSE = 1.0


def worker_options(options: WorkerOptions, index: int) -> WorkerOptions:
    """The options of worker ``index`` (1-based) among several."""
    name, _, host = expand_hostname(options.hostname).partition("@")
    return replace(
        options,
        hostname=f"{name}-{index}@{host}",
        beat=options.beat and index == 1,
        banner=options.banner and index == 1,
    )


class _Supervisor:
    def __init__(self, make_worker: Callable[[int], Worker], count: int) -> None:
        self.make_worker = make_worker
        self.count = count
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (index, started at)
        self.stopping = False
        self.exit_code = 0

    def run(self) -> int:
        for sig in _FORWARDED:
            signal.signal(sig, self._forward)
        for index in range(1, self.count + 1):
            self._spawn(index)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self._reap(pid, os.waitstatus_to_exitcode(status))
        return self.exit_code

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child (covered by the tests' children)
            code = 1
            try:
                for sig in _FORWARDED:
                    signal.signal(sig, signal.SIG_DFL)
                # Its own process group: a Ctrl-C in the terminal reaches the supervisor
                # only, which passes it on once (twice would mean a cold shutdown).
                os.setpgid(0, 0)
                die_with_parent(parent)
                code = self.make_worker(index).start()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = (index, time.monotonic())
        if self.stopping:  # a signal came while forking: this one must hear it too
            os.kill(pid, signal.SIGTERM)

    def _reap(self, pid: int, code: int) -> None:
        entry = self.children.pop(pid, None)
        if entry is None:
            return
        index, started = entry
        if self.stopping:
            self.exit_code = max(self.exit_code, abs(code))
            return
        logger.error("worker %d (pid %d) exited with code %d; restarting it", index, pid, code)
        if time.monotonic() - started < _YOUNG:
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


def run_loops(app: object, options: WorkerOptions, count: int) -> int:
    """Run ``count`` workers of ``app`` in their own processes until they stop."""

    def make_worker(index: int) -> Worker:
        return Worker(app, worker_options(options, index))

    return _Supervisor(make_worker, count).run()
