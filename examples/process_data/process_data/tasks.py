"""The celeriac app and its tasks. With Celery this file would say ``from celery import Celery``.

``PROCESS_DATA_QUEUE=celery`` makes exactly that swap (the two imports below and nothing
else), so the benchmark can run the same app on Celery side by side.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from process_data import settings

if TYPE_CHECKING or settings.QUEUE != "celery":
    from celeriac import Celery
    from celeriac.schedules import crontab
else:
    from celery import Celery
    from celery.schedules import crontab
from process_data.db import Job, Session, create_tables

__all__ = ["app", "process_data", "purge_old_jobs"]

app = Celery("process_data", broker=settings.BROKER_URL, backend=settings.RESULT_BACKEND)
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    result_expires=dt.timedelta(days=1),
    beat_schedule={
        "purge-old-jobs": {
            "task": "process_data.tasks.purge_old_jobs",
            "schedule": crontab(minute=0),
        },
    },
)


@app.task
def process_data(job_id: str) -> dict[str, Any]:
    """Summarise the job's JSON document and record the outcome on its row."""
    create_tables()
    with Session.begin() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise LookupError(f"no job {job_id!r}")
        job.status = "running"
        payload = job.payload
    outcome = summarise(payload)
    time.sleep(0.01)  # stands in for the slow part of real work (an API call, a render)
    with Session.begin() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status = "done"
        job.outcome = outcome
        job.worker = process_data.request.hostname
        job.finished_at = dt.datetime.now(dt.UTC)
    return outcome


@app.task
def purge_old_jobs(days: int = 7) -> int:
    """Delete finished jobs older than ``days``; the count deleted."""
    create_tables()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with Session.begin() as session:
        old = session.query(Job).filter(Job.finished_at < cutoff)
        return old.delete()


def summarise(payload: Any) -> dict[str, Any]:
    """What the processing computes: the document's size, keys and the sum of its numbers."""
    numbers = [
        value
        for value in _leaves(payload)
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    keys = sorted(payload) if isinstance(payload, dict) else []
    return {"keys": keys, "leaves": sum(1 for _ in _leaves(payload)), "total": sum(numbers)}


def _leaves(value: Any) -> Any:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
