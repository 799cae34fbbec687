"""``celeriac.app.base``: the application class (Celery's ``celery.app.base``)."""

from celeriac.app import Celery

__all__ = ["Celery"]
