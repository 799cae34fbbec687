"""Seed 002's tasks: two queues on two direct exchanges, results in Redis, a beat job, a DB write.

The exchange and queue set-up is the seed's, word for word; with Celery the imports would say
``from celery import Celery`` and ``from kombu import Exchange, Queue``.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3

from celeriac import Celery, Exchange, Queue

__all__ = ["add", "app", "count_items", "store_item"]

app = Celery(
    "tasks",
    broker=os.environ.get("BROKER_URL", "amqp://guest:guest@rabbitmq//"),
    backend=os.environ.get("RESULT_BACKEND", "redis://redis:6379/0"),
)

# Exchange
default_exchange = Exchange("default", type="direct")
custom_exchange = Exchange("custom", type="direct")

# Queue
default_queue = Queue("default", exchange=default_exchange, routing_key="default")
high_priority_queue = Queue("high_priority", exchange=custom_exchange, routing_key="high_priority")
#
app.conf.task_queues = (default_queue, high_priority_queue)

# default
app.conf.task_default_exchange = "default"
app.conf.task_default_exchange_type = "direct"
app.conf.task_default_routing_key = "default"

# The seed's beat job: count what the API stored, every minute (BEAT_SECONDS to change it).
BEAT_SECONDS = float(os.environ.get("BEAT_SECONDS", "60"))
app.conf.beat_schedule = {
    # To a queue the worker consumes: unrouted tasks go to `celery`, which `-Q` leaves out.
    "count-items": {
        "task": "tasks.count_items",
        "schedule": BEAT_SECONDS,
        "options": {"queue": "default"},
    },
}

DATABASE = os.environ.get("ITEMS_DB", "items.sqlite")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def store_item(name: str, value: int) -> int:
    """The DB write of the seed: store one item the API received; its row id."""
    with sqlite3.connect(DATABASE) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items (name TEXT, value INTEGER, at TEXT)")
        cursor = db.execute(
            "INSERT INTO items VALUES (?, ?, ?)", (name, value, dt.datetime.now(dt.UTC).isoformat())
        )
        return int(cursor.lastrowid or 0)


@app.task
def count_items() -> int:
    """The periodic script: how many items are stored."""
    with sqlite3.connect(DATABASE) as db:
        db.execute("CREATE TABLE IF NOT EXISTS items (name TEXT, value INTEGER, at TEXT)")
        (count,) = db.execute("SELECT count(*) FROM items").fetchone()
    print(f"{count} items stored")
    return int(count)
