"""Seed 003's ``tasks.py``: a task, a periodic task, a group, a chain and a failing task.

The code is the seed's; with Celery the imports would say ``celery`` where they say ``celeriac``.
"""

from __future__ import annotations

import os
import time
from random import random
from typing import Any

from celeriac import Celery
from celeriac.schedules import crontab

__all__ = [
    "add",
    "app",
    "buy_bread",
    "buy_milk",
    "check_cat",
    "fetch_user_name",
    "greeting_user",
    "heavy_task",
]

app = Celery(
    "tasks",
    broker=os.environ.get("BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("RESULT_BACKEND", "redis://localhost:6379/0"),
)


@app.on_after_configure.connect
def setup_periodic_tasks(sender: Any, **kwargs: Any) -> None:
    sender.add_periodic_task(60, check_cat.s())
    sender.add_periodic_task(crontab(hour=7, minute=30, day_of_week=1), check_cat.s())


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def check_cat() -> None:
    if random() < 0.5:
        print("Кот ничего не сломал.")
    else:
        print("Кот что-то сломал...")


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


@app.task
def heavy_task(n: int) -> int:
    result = 1
    for i in range(2, n):
        result *= i
        time.sleep(0.01)
    return result
