"""Django support, switched on as Celery's is: by ``DJANGO_SETTINGS_MODULE`` in the environment.

What it does, for an app created while that variable is set and Django is importable:

- ``app.autodiscover_tasks()`` with no packages imports ``<app>.tasks`` of every installed
  Django app (:func:`installed_apps`), once the registry is ready: the worker and beat call
  ``django.setup()`` before they import the task modules;
- the worker calls ``django.setup()`` before importing the task modules and runs Django's
  system checks when it is ready, warning if ``DEBUG`` is on (Django then keeps every query in
  memory, which a long-running worker cannot afford);
- pool processes drop the database connections inherited through ``fork`` (two processes must
  never share one socket), and around every task connections that are broken or older than
  ``CONN_MAX_AGE`` are closed (``django.db.close_old_connections``), as Django does around a
  request.

``Task.delay_on_commit()`` and ``apply_async_on_commit()`` (Celery 5.4's names) publish once the
current database transaction commits, so a task never reads a row that is not committed yet.
"""

from __future__ import annotations

import importlib
import logging
import os
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celeriac import signals
from celeriac.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["DjangoFixup", "fixup", "installed_apps", "on_commit"]

logger = logging.getLogger(__name__)

SETTINGS_VARIABLE = "DJANGO_SETTINGS_MODULE"

_INHERITED: list[Any] = []
"""Database handles a pool process inherited from its parent (see ``on_worker_process_init``)."""


def fixup(app: Celery) -> DjangoFixup | None:
    """Install the Django fix-up on ``app`` if ``DJANGO_SETTINGS_MODULE`` is set; else ``None``."""
    if not os.environ.get(SETTINGS_VARIABLE):
        return None
    try:
        importlib.import_module("django")
    except ImportError:
        warnings.warn(
            f"{SETTINGS_VARIABLE} is set but Django is not installed: Django support is off",
            stacklevel=3,
        )
        return None
    return DjangoFixup(app).install()


def installed_apps() -> list[str]:
    """The module names of the installed Django apps (the registry must be ready)."""
    from django.apps import apps  # noqa: PLC0415  (Django is optional)

    return [config.name for config in apps.get_app_configs()]


def on_commit(callback: Callable[[], Any]) -> None:
    """Run ``callback`` when Django's current transaction commits (``transaction.on_commit``)."""
    try:
        from django.db import transaction  # noqa: PLC0415
    except ImportError as exc:
        raise ImproperlyConfigured(
            "delay_on_commit() and apply_async_on_commit() wait for a Django transaction, "
            "but Django is not installed: use delay() or apply_async()"
        ) from exc
    transaction.on_commit(callback)


class DjangoFixup:
    """Connects Django's set-up and database hygiene to the app's worker and beat."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def install(self) -> DjangoFixup:
        signals.worker_init.connect(self.on_worker_init, weak=False)
        return self

    # process start ------------------------------------------------------------------------
    def on_import_modules(self) -> None:
        """Before a worker or beat imports the task modules: ``django.setup()`` (idempotent),
        so that models can be imported and the app registry answers ``autodiscover_tasks()``."""
        import django  # noqa: PLC0415

        django.setup()

    def on_worker_init(self, **_: Any) -> None:
        from django.conf import settings  # noqa: PLC0415

        if settings.DEBUG:
            warnings.warn(
                "Django's DEBUG is on: every query is kept in memory, which makes a worker's "
                "memory grow without bound; turn DEBUG off for workers",
                stacklevel=2,
            )
        signals.worker_ready.connect(self.on_worker_ready, weak=False)
        signals.worker_process_init.connect(self.on_worker_process_init, weak=False)
        signals.task_prerun.connect(self.close_old_connections, weak=False)
        signals.task_postrun.connect(self.close_old_connections, weak=False)

    def on_worker_ready(self, **_: Any) -> None:
        from django.core.checks import run_checks  # noqa: PLC0415

        for problem in run_checks():
            logger.warning("Django check: %s", problem)

    # database hygiene ---------------------------------------------------------------------
    def on_worker_process_init(self, **_: Any) -> None:
        """In a new pool process: forget the parent's connections without closing its sockets."""
        from django.db import connections  # noqa: PLC0415

        for connection in connections.all(initialized_only=True):
            if connection.connection is not None:
                # close() would end the parent's session on the server (the socket is shared),
                # and so would the driver's finaliser: keep the handle, unused, for good.
                _INHERITED.append(connection.connection)
                connection.connection = None

    def close_old_connections(self, **_: Any) -> None:
        from django.db import close_old_connections  # noqa: PLC0415

        close_old_connections()
