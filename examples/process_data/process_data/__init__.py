"""Seed 004's web application: Flask (app factory) in front of a celeriac task on RabbitMQ.

``POST /api/process_data`` stores the JSON body as a job in PostgreSQL, enqueues the task that
processes it and answers ``202 {"task_id": ...}`` at once; ``GET /api/tasks/<id>`` gives the
task's state and result. Served by gunicorn (``gunicorn 'process_data:create_app()'``).
"""

from __future__ import annotations

from process_data.web import create_app

__all__ = ["create_app"]
