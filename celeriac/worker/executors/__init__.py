"""Executors: where task bodies run (forked processes, threads, or the event loop itself).

``create_executor`` maps Celery's ``-P``/``--pool`` names to an executor for
synchronous task functions; ``async def`` tasks run in an :class:`InLoopExecutor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celeriac.exceptions import ImproperlyConfigured
from celeriac.worker.executors.base import Executor, ExecutorStopped, Job
from celeriac.worker.executors.inloop import AsyncSoftTimeLimitExceeded, InLoopExecutor
from celeriac.worker.executors.processes import ProcessExecutor
from celeriac.worker.executors.threads import ThreadExecutor

__all__ = [
    "POOL_NAMES",
    "AsyncSoftTimeLimitExceeded",
    "Executor",
    "ExecutorStopped",
    "InLoopExecutor",
    "Job",
    "GREEN_POOLS",
    "ProcessExecutor",
    "ThreadExecutor",
    "create_executor",
]

#: Celery's green pools, refused with what to use instead (docs/worker.md says why).
GREEN_POOLS = {
    kind: (
        f"the {kind} pool is not supported: celeriac does not monkey-patch the standard "
        "library. Use -P threads for blocking I/O code (requests, psycopg2), or write the "
        "tasks as `async def` (they run on the worker's event loop, many at once); see "
        "docs/worker.md"
    )
    for kind in ("gevent", "eventlet")
}

#: Celery's pool names we accept, and the executor each one means.
POOL_NAMES = {
    "prefork": "processes",
    "processes": "processes",
    "threads": "threads",
    "solo": "threads with one thread",
    "slots": "a process per slot, tasks run in it (celeriac worker only)",
}


def create_executor(
    name: str,
    fn: Callable[[Any], Any],
    *,
    concurrency: int,
    max_tasks_per_child: int | None = None,
    initializer: Callable[[], None] | None = None,
    on_note: Callable[[Any], None] | None = None,
    max_memory_per_child: int | None = None,
    before_spawn: Callable[[Any], None] | None = None,
    finalizer: Callable[[int], None] | None = None,
) -> Executor:
    """Build the executor for Celery pool ``name`` running ``fn``.

    ``prefork``/``processes``: :class:`ProcessExecutor`; ``threads``:
    :class:`ThreadExecutor`; ``solo``: a ThreadExecutor with one thread (whatever
    ``concurrency`` says). ``max_tasks_per_child``, ``max_memory_per_child``, ``on_note`` (see
    :func:`~celeriac.worker.executors.processes.send_note`), ``before_spawn`` (called with
    the executor before each fork) and ``finalizer`` (called in a child as it exits, with
    its exit code) only apply to processes.
    """
    kind = name.strip().lower()
    if kind in ("prefork", "processes"):
        return ProcessExecutor(
            fn,
            concurrency=concurrency,
            max_tasks_per_child=max_tasks_per_child,
            initializer=initializer,
            on_note=on_note,
            max_memory_per_child=max_memory_per_child,
            before_spawn=before_spawn,
            finalizer=finalizer,
        )
    if kind == "threads":
        return ThreadExecutor(fn, concurrency=concurrency, initializer=initializer)
    if kind == "solo":
        return ThreadExecutor(fn, concurrency=1, initializer=initializer)
    if kind in GREEN_POOLS:
        raise ImproperlyConfigured(GREEN_POOLS[kind])
    if kind == "slots":
        raise ImproperlyConfigured(
            "the slots pool is a shape of the `celeriac worker` command (a supervised "
            "process per slot), not a pool a Worker object builds; run `celeriac worker -P slots`"
        )
    raise ImproperlyConfigured(
        f"unknown pool {name!r}; choose one of: {', '.join(sorted(POOL_NAMES))}"
    )
