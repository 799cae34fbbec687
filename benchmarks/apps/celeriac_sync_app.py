"""The benchmark's sync-only app: what a user with only ``def`` tasks runs.

The worker loads it with ``celeriac -A celeriac_sync_app worker`` (no other flag: the
defaults row). Its tasks carry the names of :mod:`celeriac_app`'s sync tasks, so the
producer (which imports ``celeriac_app``) enqueues them unchanged; no ``async def`` task
is registered, so the worker's window is not widened by ``--async-concurrency``.
"""

from __future__ import annotations

from typing import Any

from bodies import BROKER_URL, QUEUE, RESULT_URL, RESULTS, spin_fib, tick
from bodies import tick_after_sleep as _tick_after_sleep

from celeriac import Celery

__all__ = ["app"]

_settings: dict[str, Any] = {"task_ignore_result": not RESULTS}
if QUEUE:
    _settings["task_default_queue"] = QUEUE
app = Celery("celeriac_app", broker=BROKER_URL, backend=RESULT_URL, **_settings)


@app.task(name="celeriac_app.noop")
def noop() -> None:
    """The no-op task: count and return."""
    tick()


@app.task(name="celeriac_app.sleep")
def sleep() -> None:
    """Block 10 ms."""
    _tick_after_sleep()


@app.task(name="celeriac_app.fib")
def fib() -> int:
    """fib(20) in the process pool."""
    return spin_fib()


@app.task(name="celeriac_app.blob")
def blob(data: str) -> None:
    """The payload task of the scaling curves: take a string argument, count."""
    tick()


@app.task(name="celeriac_app.add")
def add(x: int, y: int) -> int:
    """The round-trip task."""
    return x + y
