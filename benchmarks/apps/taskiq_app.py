"""The benchmark's tasks and producer operations for Taskiq + taskiq-redis (peers' venv).

``ListQueueBroker`` (a Redis list) with ``RedisAsyncResultBackend`` when results are on.
Taskiq has no countdown without its separate scheduler, so it sits out that workload.
"""

# mypy: allow-untyped-decorators, allow-untyped-calls

from __future__ import annotations

import asyncio
from typing import Any

from bodies import BROKER_URL, RESULT_URL, RESULTS, SLEEP_SECONDS, spin_fib, tick
from bodies import tick_after_sleep as _tick_after_sleep
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend  # type: ignore[import-not-found,unused-ignore]

__all__ = ["broker", "enqueue", "round_trip", "setup", "teardown"]

broker: Any = ListQueueBroker(url=BROKER_URL)
if RESULTS:
    broker = broker.with_result_backend(RedisAsyncResultBackend(redis_url=RESULT_URL))


@broker.task
def noop() -> None:
    """The no-op task (sync: Taskiq runs it in its thread pool)."""
    tick()


@broker.task
async def anoop() -> None:
    """The no-op task as ``async def``."""
    tick()


@broker.task
def sleep() -> None:
    """Block 10 ms."""
    _tick_after_sleep()


@broker.task
async def asleep() -> None:
    """Await 10 ms."""
    await asyncio.sleep(SLEEP_SECONDS)
    tick()


@broker.task
def fib() -> int:
    """fib(20)."""
    return spin_fib()


@broker.task
async def add(x: int, y: int) -> int:
    """The round-trip task."""
    return x + y


_TASKS: dict[str, Any] = {
    "noop": noop,
    "anoop": anoop,
    "sleep": sleep,
    "asleep": asleep,
    "fib": fib,
}


async def setup() -> None:
    """Start the client side of the broker."""
    await broker.startup()


async def teardown() -> None:
    """Stop the client side of the broker."""
    await broker.shutdown()


async def enqueue(kind: str, n: int) -> None:
    """``await task.kiq()`` n times."""
    task = _TASKS[kind]
    for _ in range(n):
        await task.kiq()


async def round_trip(i: int) -> int:
    """``await (await add.kiq(i, i)).wait_result()``; Taskiq polls, here every 1 ms."""
    handle = await add.kiq(i, i)
    result = await handle.wait_result(check_interval=0.001, timeout=30)
    value: int = result.return_value
    return value
