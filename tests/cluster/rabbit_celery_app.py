"""A real Celery 5.5+ app for the RabbitMQ cluster tests: the same record task and queues as
:mod:`tests.cluster.rabbit_app`, run by a ``celery worker`` (environment: ``RABBIT_CLUSTER_URLS``,
``RABBIT_CLUSTER_RECORD``)."""

from __future__ import annotations

import os
import time

from celery import Celery
from kombu import Exchange, Queue

__all__ = ["app", "record"]

RECORD = os.environ.get("RABBIT_CLUSTER_RECORD", os.devnull)
QUORUM = {"x-queue-type": "quorum"}

app = Celery("rabbitcluster-celery", broker=os.environ.get("RABBIT_CLUSTER_URLS", "memory://"))
app.conf.update(
    task_default_queue="r25.quorum",
    task_queues=[
        Queue("r25.quorum", queue_arguments=QUORUM),
        Queue(
            "r25.topic-q",
            Exchange("r25.topic", type="topic"),
            "r25.topic-q",
            queue_arguments=QUORUM,
        ),
    ],
)


@app.task(name="tests.cluster.rabbit_app.record", acks_late=True)
def record(n: int) -> int:
    """Note this execution (as the celeriac app's task does); return ``n``."""
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"run {n} {os.getpid()} {time.time():.4f}\n".encode())
    finally:
        os.close(fd)
    return n
