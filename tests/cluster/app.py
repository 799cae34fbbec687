"""The app of the Redis Cluster tests' worker processes: every execution is recorded.

Configured from the environment: ``CLUSTER_URL`` (a ``redis+cluster://`` URL: broker,
result backend and beat store), ``CLUSTER_PREFIX`` (``global_keyprefix``), ``CLUSTER_RECORD``
(a file: ``run <n> <pid> <time>`` per execution, one O_APPEND write each).
"""

from __future__ import annotations

import os
import time

from celeriac import Celery

RECORD = os.environ.get("CLUSTER_RECORD", os.devnull)

app = Celery("cluster")


def configure(url: str, prefix: str = "") -> None:
    """Broker, result backend and beat store at ``url``, keys under ``prefix``."""
    app.conf.update(
        broker_url=url,
        result_backend=url,
        beat_schedule_store=url,
        broker_transport_options={"global_keyprefix": prefix, "lease_timeout": 10.0},
        result_backend_transport_options={"global_keyprefix": prefix},
        worker_prefetch_multiplier=8,
    )


configure(os.environ.get("CLUSTER_URL", "memory://"), os.environ.get("CLUSTER_PREFIX", ""))
if os.environ.get("CLUSTER_OPTION"):
    # one extra broker transport option, ``name=value`` (the start-up refusal tests)
    name, _, value = os.environ["CLUSTER_OPTION"].partition("=")
    app.conf.broker_transport_options = {**app.conf.broker_transport_options, name: value}


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
