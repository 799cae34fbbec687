"""The worker's head: ``celeriac -A celery_dao.tasks worker``.

With Celery this file says ``from celery import Celery``; nothing else changes.
"""

from __future__ import annotations

import os
import time

from celeriac import Celery

__all__ = ["add", "app"]

app = Celery(
    "celery_dao",
    broker=os.environ.get("BROKER_URL", "amqp://guest:guest@rabbitmq//"),
    backend=os.environ.get("RESULT_BACKEND", "rpc://"),
)

#: The seed makes the addition take 10 seconds to show that the caller waits for the worker.
SECONDS = float(os.environ.get("ADD_SECONDS", "10"))


@app.task
def add(x: int, y: int) -> int:
    time.sleep(SECONDS)
    return x + y
