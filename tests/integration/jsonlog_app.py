"""The app of the JSON log tests: a task that logs and succeeds, one that fails, one
retried once, and a beat entry; its broker, backend and key prefix come from the environment."""

from __future__ import annotations

import os

from celeriac import Celery, Task
from celeriac.utils.log import get_task_logger

BROKER = os.environ.get("JSONLOG_BROKER", "memory://")
PREFIX = os.environ.get("JSONLOG_PREFIX", "")

app = Celery("jsonlog", broker=BROKER, backend=BROKER)
app.conf.broker_transport_options = {"global_keyprefix": PREFIX}
app.conf.result_backend_transport_options = {"global_keyprefix": PREFIX}
app.conf.beat_schedule = {
    "every-half-second": {"task": "jsonlog.tick", "schedule": 0.5},
}

logger = get_task_logger(__name__)


@app.task(name="jsonlog.greet")
def greet(name: str) -> str:
    logger.info("greeting %s", name)
    return f"hello {name}"


@app.task(name="jsonlog.fail")
def fail(reason: str) -> None:
    raise ValueError(reason)


@app.task(name="jsonlog.retry_once", bind=True, max_retries=1, default_retry_delay=0.1)
def retry_once(self: Task) -> int:
    if self.request.retries == 0:
        raise self.retry(exc=RuntimeError("first try"))
    return self.request.retries


@app.task(name="jsonlog.tick")
def tick() -> None:
    return None
