"""``celeriac.app.task``: the Task class and its request context (Celery's ``celery.app.task``)."""

from celeriac.context import Context
from celeriac.task import Task

__all__ = ["Context", "Task"]
