"""Where the services are: every address comes from the environment, with loopback defaults.

The same variables are set by ``deploy/docker-compose.yml`` (service names as hosts) and by
``deploy/run-local.sh`` (the machine's own servers on loopback).
"""

from __future__ import annotations

import os

__all__ = [
    "BROKER_URL",
    "DATABASE_SCHEMA",
    "DATABASE_URL",
    "MAX_BODY_BYTES",
    "PUBLISH_TIMEOUT",
    "QUEUE",
    "RESULT_BACKEND",
]

BROKER_URL = os.environ.get("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
#: SQLAlchemy URL of the application's own database (the ``jobs`` table).
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: A PostgreSQL schema to work in (the e2e test uses a throwaway one); empty: the default.
DATABASE_SCHEMA = os.environ.get("DATABASE_SCHEMA", "")
#: Task results live in the same database, in Celery's tables (``celery_taskmeta``).
RESULT_BACKEND = os.environ.get(
    "RESULT_BACKEND",
    "db+postgresql://postgres@127.0.0.1:5432/test"
    + (f"?schema={DATABASE_SCHEMA}" if DATABASE_SCHEMA else ""),
)
#: A POST body larger than this is refused with 413.
MAX_BODY_BYTES = int(os.environ.get("MAX_BODY_BYTES", str(64 * 1024)))
#: Seconds a POST may spend reaching the broker before it answers 503.
PUBLISH_TIMEOUT = float(os.environ.get("PUBLISH_TIMEOUT", "3"))
#: The task queue library: ``celeriac`` (the default) or ``celery`` (the same app on Celery).
QUEUE = os.environ.get("PROCESS_DATA_QUEUE", "celeriac")
