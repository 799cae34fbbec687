"""The app of the RabbitMQ cluster tests' worker processes: every execution is recorded.

Configured from the environment: ``RABBIT_CLUSTER_URLS`` (a ``;``-separated failover list),
``RABBIT_CLUSTER_RECORD`` (a file: ``run <n> <pid> <time>`` per execution, one O_APPEND write
each). Both queues are quorum queues: ``r25.quorum`` (the default, on a direct exchange) and
``r25.topic-q`` on the topic exchange ``r25.topic`` (where Celery 5.5 clients use native
delayed delivery, :data:`TOPIC_QUEUES`).
"""

from __future__ import annotations

import os
import time

from kombu import Exchange, Queue

from celeriac import Celery

__all__ = ["TOPIC_QUEUES", "app", "record"]

QUORUM = {"x-queue-type": "quorum"}
TOPIC_QUEUES = [
    Queue("r25.quorum", queue_arguments=QUORUM),
    Queue(
        "r25.topic-q", Exchange("r25.topic", type="topic"), "r25.topic-q", queue_arguments=QUORUM
    ),
]

RECORD = os.environ.get("RABBIT_CLUSTER_RECORD", os.devnull)

app = Celery("rabbitcluster")
app.conf.update(
    broker_url=os.environ.get("RABBIT_CLUSTER_URLS", "memory://"),
    task_default_queue="r25.quorum",
    task_default_queue_type="quorum",
    task_queues=TOPIC_QUEUES,
    broker_failover_strategy="round-robin",
    broker_transport_options={"max_retries": None, "retry_backoff_max": 1.0},
    worker_prefetch_multiplier=4,
)


@app.task(acks_late=True)
def record(n: int) -> int:
    """Note this execution; return ``n``."""
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"run {n} {os.getpid()} {time.time():.4f}\n".encode())
    finally:
        os.close(fd)
    time.sleep(0.002)
    return n
