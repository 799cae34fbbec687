"""The app of the Redis Cluster tests' worker processes: every execution is recorded.

Configured from the environment: ``CLUSTER_URL`` (a ``redis+cluster://`` URL: broker,
result backend and beat store), ``CLUSTER_PREFIX`` (``global_keyprefix``), ``CLUSTER_RECORD``
(a file: ``run <n> <pid> <time>`` per execution, one O_APPEND write each).
"""

from __future__ import annotations

import os
import time

from celeriac import Celery

URL = os.environ.get("CLUSTER_URL", "memory://")
PREFIX = os.environ.get("CLUSTER_PREFIX", "")
RECORD = os.environ.get("CLUSTER_RECORD", os.devnull)

app = Celery("cluster")
app.conf.broker_url = URL
app.conf.result_backend = URL
app.conf.beat_schedule_store = URL
app.conf.broker_transport_options = {"global_keyprefix": PREFIX, "lease_timeout": 10.0}
app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}
app.conf.worker_prefetch_multiplier = 8


@app.task(acks_late=True)
def record(n: int) -> int:
    """Note this execution; return ``n``."""
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"run {n} {os.getpid()} {time.time():.4f}\n".encode())
    finally:
        os.close(fd)
    return n


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
