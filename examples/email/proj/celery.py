"""The app (seed 001, step 3): Redis as the broker and the result store.

With Celery this file says ``from celery import Celery``; nothing else changes.
"""

from __future__ import annotations

import os

from celeriac import Celery

__all__ = ["app"]

app = Celery(
    "proj",
    broker=os.environ.get("BROKER_URL", "redis://localhost:6379/0"),
    backend=os.environ.get("RESULT_BACKEND", "redis://localhost:6379/0"),
    include=["proj.tasks"],
)
