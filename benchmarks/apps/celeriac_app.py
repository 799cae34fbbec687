"""The benchmark's tasks and producer operations for celeriac (runs in the main venv).

The worker loads this module with ``celeriac -A celeriac_app worker``; the producer side
(:mod:`benchmarks.client`) calls the operations at the bottom.
"""

from __future__ import annotations

import asyncio
import os
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
    "enqueue_curve",
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


@app.task
def blob(data: str) -> None:
    """The payload task: take a string argument (its size is the curve's x), count."""
    tick()


_TASKS = {"noop": noop, "anoop": anoop, "sleep": sleep, "asleep": asleep, "fib": fib}
CHUNK_BYTES = 8_000_000
"""At most this many payload bytes per ``apublish`` batch (1 MB payloads: 8 a batch)."""


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


async def enqueue_curve(kind: str, n: int) -> None:
    """The scaling curves' producer (benchmarks/curves.py), through the batch path.

    ``kind`` ``noop`` sends no-ops round robin over the comma-separated queues of
    ``BENCH_QUEUES`` (empty: the default queue); ``blob`` sends ``blob`` tasks whose
    argument is a string of ``BENCH_PAYLOAD`` bytes.
    """
    queues = [q for q in os.environ.get("BENCH_QUEUES", "").split(",") if q]
    size = int(os.environ.get("BENCH_PAYLOAD") or 0)
    task = blob if kind == "blob" else _TASKS[kind]
    args = ("x" * size,) if kind == "blob" else ()
    chunk = max(1, min(BULK_CHUNK, CHUNK_BYTES // max(size, 1)))
    for start in range(0, n, chunk):
        requests = []
        for i in range(start, min(start + chunk, n)):
            options = {"queue": queues[i % len(queues)]} if queues else {}
            requests.append(app.build_request(task.name, args, {}, options, task))
        await app.apublish(requests)


def round_trip(i: int) -> int:
    """``add.delay(i, i).get()``: the sync result API (pub/sub on the Redis backend)."""
    value: int = add.delay(i, i).get(timeout=30)
    return value


async def around_trip(i: int) -> int:
    """``await (await add.adelay(i, i)).aget()``: the async result API."""
    result = await add.adelay(i, i)
    value: int = await result.aget(timeout=30)
    return value
