"""The app of the Redis Sentinel tests' worker and beat processes: every run is recorded.

Configured from the environment: ``SENTINEL_URL`` (a ``sentinel://`` list: broker, result
backend and beat store), ``SENTINEL_MASTER`` (``master_name``), ``SENTINEL_PREFIX``
(``global_keyprefix``), ``SENTINEL_MIN_REPLICAS`` (``min_replicas``), ``SENTINEL_RECORD``
(a file: ``run <n> <pid> <time>`` per execution, one O_APPEND write each);
``SENTINEL_BEAT`` set: beat sends ``record(-1)`` every 0.5 s.
"""

from __future__ import annotations

import os
import time

from celeriac import Celery

RECORD = os.environ.get("SENTINEL_RECORD", os.devnull)
TICK = -1
"""The argument of the beat's task."""

app = Celery("sentinel")


def configure(url: str, master: str, prefix: str = "", min_replicas: int = 0) -> None:
    """Broker, result backend and beat store behind the sentinels at ``url``; publishes
    and acks wait for ``min_replicas`` replicas."""
    app.conf.update(
        broker_url=url,
        result_backend=url,
        beat_schedule_store=url,
        broker_transport_options={
            "master_name": master,
            "global_keyprefix": prefix,
            "lease_timeout": 10.0,
            "min_replicas": min_replicas,
        },
        result_backend_transport_options={"master_name": master, "global_keyprefix": prefix},
        worker_prefetch_multiplier=8,
    )


configure(
    os.environ.get("SENTINEL_URL", "memory://"),
    os.environ.get("SENTINEL_MASTER", ""),
    os.environ.get("SENTINEL_PREFIX", ""),
    int(os.environ.get("SENTINEL_MIN_REPLICAS", "0")),
)
if os.environ.get("SENTINEL_BEAT"):
    app.conf.beat_schedule = {
        "tick": {"task": "tests.cluster.sentinel_app.record", "schedule": 0.5, "args": (TICK,)}
    }


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
