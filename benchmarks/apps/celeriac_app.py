"""The benchmark's tasks and producer operations for celeriac (runs in the main venv).

The worker loads this module with ``celeriac -A celeriac_app worker``; the producer side
(:mod:`benchmarks.client`) calls the operations at the bottom.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bodies import BROKER_URL, QUEUE, RESULT_URL, RESULTS, SLEEP_SECONDS, spin_fib, tick
from bodies import tick_after_sleep as _tick_after_sleep

from celeriac import Celery

__all__ = [
    "aenqueue",
    "app",
    "around_trip",
    "enqueue",
    "enqueue_bulk",
    "enqueue_countdown",
    "enqueue_requests",
    "round_trip",
    "setup",
]

_settings: dict[str, Any] = {"task_ignore_result": not RESULTS}
if QUEUE:
    _settings["task_default_queue"] = QUEUE
app = Celery("celeriac_app", broker=BROKER_URL, backend=RESULT_URL, **_settings)

BULK_CHUNK = 1000


@app.task
def noop() -> None:
    """The no-op task: count and return."""
    tick()


@app.task
async def anoop() -> None:
    """The no-op task as ``async def`` (runs on the worker's event loop)."""
    tick()


@app.task
def sleep() -> None:
    """Block 10 ms (thread pool I/O)."""
    _tick_after_sleep()


@app.task
async def asleep() -> None:
    """Await 10 ms (event-loop I/O)."""
    await asyncio.sleep(SLEEP_SECONDS)
    tick()


@app.task
def fib() -> int:
    """fib(20) in the process pool."""
    return spin_fib()


@app.task
def add(x: int, y: int) -> int:
    """The round-trip task."""
    return x + y


_TASKS = {"noop": noop, "anoop": anoop, "sleep": sleep, "asleep": asleep, "fib": fib}


def setup() -> None:
    """Connect before timing starts."""
    app.run_sync(app.aget_transport())


def enqueue(kind: str, n: int) -> None:
    """``task.delay()`` n times from sync code (what a web view does)."""
    task = _TASKS[kind]
    for _ in range(n):
        task.delay()


async def aenqueue(kind: str, n: int) -> None:
    """``await task.adelay()`` n times."""
    task = _TASKS[kind]
    for _ in range(n):
        await task.adelay()


async def enqueue_bulk(kind: str, n: int) -> None:
    """The public batch path: ``await app.asend_many(...)`` of ``BULK_CHUNK`` signatures at a
    time (each call checks and encodes its batch, then stores it in one round trip)."""
    sig = _TASKS[kind].s()
    for start in range(0, n, BULK_CHUNK):
        await app.asend_many([sig] * min(BULK_CHUNK, n - start))


async def enqueue_requests(kind: str, n: int) -> None:
    """The internal path ``enqueue_bulk`` timed before ``send_many`` existed, for comparison:
    ``app.apublish`` of ``build_request`` lists, ``BULK_CHUNK`` at a time."""
    task = _TASKS[kind]
    for start in range(0, n, BULK_CHUNK):
        count = min(BULK_CHUNK, n - start)
        await app.apublish([app.build_request(task.name, (), {}, {}, task) for _ in range(count)])


async def enqueue_countdown(n: int, seconds: float) -> None:
    """n no-op tasks due in ``seconds`` (through the batch path: only memory matters here)."""
    for start in range(0, n, BULK_CHUNK):
        count = min(BULK_CHUNK, n - start)
        await app.asend_many([noop.s()] * count, countdown=seconds)


def round_trip(i: int) -> int:
    """``add.delay(i, i).get()``: the sync result API (pub/sub on the Redis backend)."""
    value: int = add.delay(i, i).get(timeout=30)
    return value


async def around_trip(i: int) -> int:
    """``await (await add.adelay(i, i)).aget()``: the async result API."""
    result = await add.adelay(i, i)
    value: int = await result.aget(timeout=30)
    return value
