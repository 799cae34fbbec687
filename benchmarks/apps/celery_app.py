"""The benchmark's tasks and producer operations for Celery (runs in the peers' venv).

Results go to the Redis result backend (``BENCH_RESULT_URL``) unless ``BENCH_RESULTS=0``;
Celery's defaults otherwise (acks on receipt, prefetch multiplier 4).
"""

# mypy: allow-untyped-decorators, allow-untyped-calls

from __future__ import annotations

from typing import Any

from bodies import BROKER_URL, QUEUE, RESULT_URL, RESULTS, spin_fib, tick, tick_after_sleep
from celery import Celery

__all__ = ["app", "enqueue", "enqueue_countdown", "round_trip", "setup"]

app = Celery("celery_app", broker=BROKER_URL, backend=RESULT_URL if RESULTS else None)
app.conf.update(
    task_ignore_result=not RESULTS,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
if QUEUE:
    app.conf.task_default_queue = QUEUE


@app.task
def noop() -> None:
    """The no-op task: count and return."""
    tick()


@app.task
def sleep() -> None:
    """Block 10 ms (thread pool I/O)."""
    tick_after_sleep()


@app.task
def fib() -> int:
    """fib(20) in the process pool."""
    return spin_fib()


@app.task
def add(x: int, y: int) -> int:
    """The round-trip task."""
    return x + y


_TASKS: dict[str, Any] = {"noop": noop, "sleep": sleep, "fib": fib}


def setup() -> None:
    """Connect before timing starts."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)


def enqueue(kind: str, n: int) -> None:
    """``task.delay()`` n times."""
    task = _TASKS[kind]
    for _ in range(n):
        task.delay()


def enqueue_countdown(n: int, seconds: float) -> None:
    """n no-op tasks with ``countdown`` (Celery workers hold these in memory)."""
    for _ in range(n):
        noop.apply_async(countdown=seconds)


def round_trip(i: int) -> int:
    """``add.delay(i, i).get()`` (Redis backend: pub/sub)."""
    value: int = add.delay(i, i).get(timeout=30)
    return value
