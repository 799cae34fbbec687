"""The benchmark's tasks and producer operations for Huey (runs in the peers' venv).

``RedisHuey`` (with ``notify_result=True``, Huey's low-latency result wait) or, when
``BENCH_BROKER`` is ``sqlite:///path``, ``SqliteHuey`` on that file. Huey stores a task's
return value only when it is not None unless ``store_none``: on, when results are on.
"""

# mypy: allow-untyped-decorators, allow-untyped-calls

from __future__ import annotations

from typing import Any

from bodies import BROKER_URL, RESULTS, spin_fib, tick, tick_after_sleep
from huey import RedisHuey, SqliteHuey  # type: ignore[import-not-found,unused-ignore]

__all__ = ["enqueue", "enqueue_countdown", "huey", "round_trip", "setup"]


def _make_huey() -> Any:
    if BROKER_URL.startswith("sqlite:///"):
        path = BROKER_URL[len("sqlite:///") :]
        return SqliteHuey("bench", filename=path, results=RESULTS, store_none=RESULTS)
    return RedisHuey(
        "bench", url=BROKER_URL, results=RESULTS, store_none=RESULTS, notify_result=True
    )


huey = _make_huey()


@huey.task()
def noop() -> None:
    """The no-op task: count and return."""
    tick()


@huey.task()
def sleep() -> None:
    """Block 10 ms (worker threads)."""
    tick_after_sleep()


@huey.task()
def fib() -> int:
    """fib(20)."""
    return spin_fib()


@huey.task()
def add(x: int, y: int) -> int:
    """The round-trip task (results are always needed here)."""
    return x + y


_TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "fib": fib}


def setup() -> None:
    """Nothing to connect ahead: Huey's storage connects on first use."""
    huey.pending_count()


def enqueue(kind: str, n: int) -> None:
    """Calling a Huey task enqueues it; n times."""
    task = _TASKS[kind]
    for _ in range(n):
        task()


def enqueue_countdown(n: int, seconds: float) -> None:
    """n no-op tasks with ``schedule(delay=...)`` (the consumer keeps them in the storage)."""
    for _ in range(n):
        noop.schedule(delay=seconds)


def round_trip(i: int) -> int:
    """``add(i, i).get(blocking=True)`` (Redis: BLPOP on a notify key; SQLite: polling)."""
    value: int = add(i, i).get(blocking=True, timeout=30)
    return value
