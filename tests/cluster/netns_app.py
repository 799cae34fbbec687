"""The app of the namespace tests' workers: every start and finish of a task is recorded.

Configured from the environment: ``NETNS_URL`` (broker and result backend as this host
reaches them), ``NETNS_LEASE`` (the broker's ``lease_timeout``), ``NETNS_RECORD`` (a file:
``start|done <n> <hostname> <time>`` per event, one O_APPEND write each; the namespaces
share this host's file system).
"""

from __future__ import annotations

import os
import socket
import time

from celeriac import Celery

RECORD = os.environ.get("NETNS_RECORD", os.devnull)
HOST = os.environ.get("NETNS_HOST", socket.gethostname())

app = Celery("netns")
app.conf.update(
    broker_url=os.environ.get("NETNS_URL", "memory://"),
    result_backend=os.environ.get("NETNS_URL", "cache+memory://"),
    broker_transport_options={"lease_timeout": float(os.environ.get("NETNS_LEASE", "30"))},
    worker_prefetch_multiplier=1,
)


def _note(event: str, n: int) -> None:
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{event} {n} {HOST} {time.time():.4f}\n".encode())
    finally:
        os.close(fd)


@app.task(acks_late=True)
def work(n: int, seconds: float, slow_host: str = "", slow: float = 0.0) -> str:
    """Note the start, sleep ``seconds`` (``slow`` on ``slow_host``), note the finish;
    return the name of the host that ran it."""
    _note("start", n)
    time.sleep(slow if HOST == slow_host else seconds)
    _note("done", n)
    return HOST


@app.task(ignore_result=True)
def noop() -> None:
    """Nothing: the scaling benchmark's task."""
