"""``celery.ping``, the task an embedded worker answers to prove it is up."""

from __future__ import annotations

from celeriac.task import Task, shared_task

__all__ = ["ping"]


def _ping() -> str:
    """Return ``'pong'``."""
    return "pong"


ping: Task = shared_task(name="celery.ping")(_ping)
"""Registered on every app (as Celery's, a shared task)."""
