"""Tasks for the canvas worker tests (importable by pool children too).

The seed 003 tasks are written exactly as in the tutorial.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from celeriac import Celery

app = Celery("canvas")

# What new-style errbacks saw, by the failed task's id (they run in the worker process).
errback_calls: dict[str, tuple[Any, ...]] = {}
errback_seen = threading.Event()


# --- seed 003 ---------------------------------------------------------------------------
@app.task
def buy_milk(volume: int) -> int:
    print(f"Покупаем {volume} литров молока")
    return volume


@app.task
def buy_bread(count: int) -> int:
    print(f"Покупаем {count} буханок хлеба")
    return count


@app.task
def fetch_user_name(id: int) -> str:
    return f"Пётр {id}Первый"


@app.task
def greeting_user(name: str) -> str:
    return f"Здравствуй, {name}!"


# --- arithmetic ---------------------------------------------------------------------------
@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def xsum(numbers: list[int]) -> int:
    return sum(numbers)


@app.task
def collect(*values: Any) -> list[Any]:
    return list(values)


@app.task
def echo_after(value: Any, seconds: float) -> Any:
    """Finish after ``seconds``, so completion order can differ from group order."""
    time.sleep(seconds)
    return value


@app.task
async def async_double(x: int) -> int:
    return x * 2


@app.task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


# --- callbacks ----------------------------------------------------------------------------
@app.task
def on_error(task_id: str) -> str:
    """An old-style errback: published as a task with the failed task's id."""
    return f"handled {task_id}"


@app.task
def on_error_request(request: Any, exc: BaseException, traceback: str | None) -> None:
    """A new-style errback: called in the worker with (request, exc, traceback)."""
    errback_calls[str(request.id)] = (type(exc).__name__, str(exc), bool(traceback))
    errback_seen.set()
