"""An embedded worker for tests: Celery's ``celery.contrib.testing.worker.start_worker``.

``start_worker(app)`` runs a real celeriac worker (``solo`` pool by default) on its own
event loop in a background thread of the test process, waits until it consumes, checks
it answers ``celery.ping`` and stops it (warm shutdown) when the ``with`` block ends::

    with start_worker(app, perform_ping_check=False) as worker:
        assert add.delay(2, 2).get(timeout=10) == 4

With an in-memory broker (the test app's default) client and worker share the queues of
this process. The worker looks tasks up for each message, so tasks defined after it
started are found (``worker.reload()`` is accepted and does nothing).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celeriac import signals
from celeriac.signals import Signal
from celeriac.worker.worker import Worker, WorkerOptions

__all__ = [
    "WORKER_LOGLEVEL",
    "TestWorkController",
    "start_worker",
    "test_worker_started",
    "test_worker_starting",
    "test_worker_stopped",
]

WORKER_LOGLEVEL = os.environ.get("WORKER_LOGLEVEL", "error")
"""The embedded worker's log level (Celery's ``WORKER_LOGLEVEL`` variable)."""

test_worker_starting = Signal("test_worker_starting")
"""Sent (``sender=app``) before an embedded worker starts."""
test_worker_started = Signal("test_worker_started")
"""Sent (``sender=app``, ``worker=``) once it consumes."""
test_worker_stopped = Signal("test_worker_stopped")
"""Sent (``sender=app``, ``worker=``) after it stopped."""

# WorkerOptions fields a caller may pass as keyword arguments (Celery's names).
_OPTIONS = frozenset(
    {"queues", "prefetch_multiplier", "max_tasks_per_child", "time_limit", "soft_time_limit"}
)
# Celery's test worker turns these off; celeriac's worker has none of them to turn on.
_ALWAYS_OFF = ("without_heartbeat", "without_mingle", "without_gossip")


class TestWorkController:
    """A celeriac worker running in a background thread, with its own event loop."""

    __test__ = False  # not a test class, although its name starts with Test

    def __init__(self, app: Any, options: WorkerOptions) -> None:
        self.app = app
        self.worker = Worker(app, options)
        self.hostname = self.worker.hostname
        self.concurrency = self.worker.concurrency
        self.pool_name = self.worker.pool_name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"celeriac-test-worker {self.hostname}", daemon=True
        )

    def start(self) -> None:
        """Start the worker thread (returns at once; see :meth:`ensure_started`)."""
        signals.worker_ready.connect(self._on_ready)
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # reported to the test thread by ensure_started
            self._error = exc
        finally:
            self._ready.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.worker.run()
        await self.app.aclose()

    def _on_ready(self, sender: Any = None, **_: Any) -> None:
        # Sent by the worker's task handler (Celery's consumer), as in Celery.
        if sender is not None and sender is self.worker.handler:
            self._ready.set()

    def ensure_started(self, timeout: float | None = 30.0) -> None:
        """Wait until the worker consumes; raise what stopped it from starting."""
        if not self._ready.wait(timeout):
            raise RuntimeError(f"embedded worker {self.hostname} not ready after {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"embedded worker {self.hostname} failed") from self._error

    def stop(self, shutdown_timeout: float = 10.0) -> None:
        """Warm shutdown: finish the running tasks, then stop (RuntimeError on timeout)."""
        signals.worker_ready.disconnect(self._on_ready)
        loop = self._loop
        if loop is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(self.worker.stop)
        self._thread.join(shutdown_timeout)
        if self._thread.is_alive():
            raise RuntimeError(
                "Worker thread failed to exit within the allocated timeout. "
                "Consider raising `shutdown_timeout` if your tasks take longer to execute."
            )

    def reload(self, *_: Any, **__: Any) -> None:
        """Nothing to do: the worker finds tasks registered after it started."""


@contextmanager
def start_worker(
    app: Any,
    concurrency: int = 1,
    pool: str = "solo",
    loglevel: str | int = WORKER_LOGLEVEL,
    logfile: str | None = None,
    perform_ping_check: bool = True,
    ping_task_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    **kwargs: Any,
) -> Iterator[TestWorkController]:
    """Run an embedded worker for the ``with`` block; yields it (see the module docs)."""
    test_worker_starting.send(sender=app)
    worker = None
    try:
        with _logging(loglevel, logfile):
            options = _options(concurrency, pool, kwargs)
            if perform_ping_check and "celery.ping" not in app.tasks:
                raise RuntimeError("perform_ping_check needs the celery.ping task")
            worker = TestWorkController(app, options)
            worker.start()
            try:
                worker.ensure_started()
                test_worker_started.send(sender=app, worker=worker)
                if perform_ping_check:
                    # Through this app: a shared task publishes through the current app.
                    pong = app.send_task("celery.ping").get(timeout=ping_task_timeout)
                    assert pong == "pong", f"celery.ping answered {pong!r}"
                yield worker
            finally:
                worker.stop(shutdown_timeout)
    finally:
        test_worker_stopped.send(sender=app, worker=worker)


def _options(concurrency: int, pool: str, kwargs: dict[str, Any]) -> WorkerOptions:
    """WorkerOptions from ``start_worker``'s arguments; unknown ones are refused."""
    extra = dict(kwargs)
    for name in _ALWAYS_OFF:
        if not extra.pop(name, True):
            raise TypeError(f"start_worker({name}=False) is not supported by celeriac")
    hostname = extra.pop("hostname", None) or f"gen{os.getpid()}@%h"
    unknown = sorted(set(extra) - _OPTIONS)
    if unknown:
        raise TypeError(f"start_worker() got unsupported worker option(s): {', '.join(unknown)}")
    return WorkerOptions(
        hostname=hostname, concurrency=concurrency, pool=pool, banner=False, **extra
    )


@contextmanager
def _logging(loglevel: str | int, logfile: str | None) -> Iterator[None]:
    """celeriac's log level (and file) while the worker runs, restored afterwards."""
    logger = logging.getLogger("celeriac")
    previous = logger.level
    level = loglevel.upper() if isinstance(loglevel, str) else loglevel
    logger.setLevel(level)
    handler = logging.FileHandler(logfile) if logfile else None
    if handler is not None:
        logger.addHandler(handler)
    try:
        yield
    finally:
        logger.setLevel(previous)
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
