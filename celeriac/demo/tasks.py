"""Seed tutorial tasks, as users write them with Celery (only the import differs).

The broker is whatever ``CELERIAC_BROKER_URL`` says; with nothing set it is the
embedded SQLite file in the current directory. ``CELERIAC_DEMO_KEY_PREFIX`` (set by
``celeriac demo --key-prefix``) puts every Redis key under that prefix.
"""

from __future__ import annotations

import asyncio
import os
import time

from celeriac import Celery

__all__ = [
    "add",
    "app",
    "buy_bread",
    "buy_milk",
    "fetch_page",
    "fetch_user_name",
    "flaky",
    "greeting_user",
    "heavy_task",
    "send_confirmation_email",
]

app = Celery("tasks")
if os.environ.get("CELERIAC_DEMO_KEY_PREFIX"):  # a shared Redis server: keep to our own keys
    _keys = {"global_keyprefix": os.environ["CELERIAC_DEMO_KEY_PREFIX"]}
    app.conf.update(broker_transport_options=_keys, result_backend_transport_options=_keys)


@app.task
def add(x: int, y: int) -> int:
    """Seed 000/001: add two numbers, slowly enough to show the asynchrony."""
    time.sleep(1)
    return x + y


@app.task
def heavy_task(n: int) -> int:
    """Seed 003: a factorial that takes a while, and fails on bad input."""
    result = 1
    for i in range(2, n):
        result *= i
        time.sleep(0.01)
    return result


@app.task(bind=True, max_retries=3, default_retry_delay=0.2)
def flaky(self: object, fail_times: int) -> str:
    """Fails ``fail_times`` times, then succeeds: shows retries."""
    retries = self.request.retries  # type: ignore[attr-defined]
    if retries < fail_times:
        raise self.retry(exc=ConnectionError(f"attempt {retries + 1} failed"))  # type: ignore[attr-defined]
    return f"succeeded after {retries} retries"


@app.task
def send_confirmation_email(address: str) -> str:
    """Seed 001: the e-mail a web app should not send inside the request."""
    time.sleep(0.2)
    return f"confirmation sent to {address}"


@app.task
async def fetch_page(url: str) -> dict[str, object]:
    """An ``async def`` task: runs natively on the worker's event loop."""
    await asyncio.sleep(0.3)
    return {"url": url, "status": 200}


@app.task
def buy_milk(volume: int) -> int:
    """Seed 003: a group member."""
    print(f"Покупаем {volume} литров молока")
    return volume


@app.task
def buy_bread(count: int) -> int:
    """Seed 003: the other group member."""
    print(f"Покупаем {count} буханок хлеба")
    return count


@app.task
def fetch_user_name(id: int) -> str:
    """Seed 003: the first link of a chain."""
    return f"Пётр {id}Первый"


@app.task
def greeting_user(name: str) -> str:
    """Seed 003: the second link, given the first one's result."""
    return f"Здравствуй, {name}!"
