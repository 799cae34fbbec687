"""The app of the RabbitMQ cluster tests' worker processes: every execution is recorded.

Configured from the environment: ``RABBIT_CLUSTER_URLS`` (a ``;``-separated failover list),
``RABBIT_CLUSTER_RECORD`` (a file: ``run <n> <pid> <time>`` per execution, one O_APPEND write
each). The default queue is a quorum queue (``task_default_queue_type``).
"""

from __future__ import annotations

import os
import time

from celeriac import Celery

__all__ = ["app", "record"]

RECORD = os.environ.get("RABBIT_CLUSTER_RECORD", os.devnull)

app = Celery("rabbitcluster")
app.conf.update(
    broker_url=os.environ.get("RABBIT_CLUSTER_URLS", "memory://"),
    task_default_queue="r25.quorum",
    task_default_queue_type="quorum",
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
