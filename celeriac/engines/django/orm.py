"""Django's ORM from asyncio code: one thread of its own, and the set-up checks.

Django's ORM is synchronous and refuses to run on an event loop. :class:`OrmThread` runs
every call on one thread, which keeps one database connection, checked with
``close_old_connections`` before each call as Django does around a request, and closed by
:meth:`OrmThread.close`. :func:`load_app_models` sets Django up if needed and says what is
missing (the package, ``DJANGO_SETTINGS_MODULE``, the app in ``INSTALLED_APPS``).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from celeriac.exceptions import ImproperlyConfigured

__all__ = ["OrmThread", "load_app_models"]

T = TypeVar("T")


class OrmThread:
    """One thread for a component's ORM calls (``name`` names the thread)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._thread: ThreadPoolExecutor | None = None

    @property
    def started(self) -> bool:
        """Whether :meth:`start` ran and :meth:`close` did not since."""
        return self._thread is not None

    async def start(self, setup: Callable[[], T]) -> T:
        """Start the thread and run ``setup`` on it (the set-up checks); stop it if that fails."""
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=self._name)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, setup)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the thread, after closing a stale or broken connection."""
        if self._thread is None:
            raise RuntimeError(f"{self._name}: the ORM thread is not started")
        return await asyncio.get_running_loop().run_in_executor(self._thread, _fresh, fn, args)

    async def close(self) -> None:
        """Close the thread's database connections and stop it; idempotent."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        from django.db import connections  # noqa: PLC0415  (Django is optional)

        await asyncio.get_running_loop().run_in_executor(thread, connections.close_all)
        thread.shutdown(wait=True)


def _fresh(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    from django.db import close_old_connections  # noqa: PLC0415

    close_old_connections()
    return fn(*args)


def load_app_models(app: str, pip_name: str, purpose: str) -> Any:
    """The ``models`` module of Django app ``app``, once Django is set up.

    ``purpose`` starts each error (e.g. ``result_backend='django-db'``); the errors name
    the package to install, ``DJANGO_SETTINGS_MODULE`` or ``INSTALLED_APPS``.
    """
    if importlib.util.find_spec(app) is None:
        raise ImproperlyConfigured(
            f"{purpose} needs the {pip_name} package, which is not installed"
            f" (pip install {pip_name})"
        )
    import django  # noqa: PLC0415
    from django.apps import apps  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415

    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ImproperlyConfigured(
            f"{purpose} works through Django: set DJANGO_SETTINGS_MODULE to the project's settings"
        )
    if not apps.ready:
        django.setup()
    if not apps.is_installed(app):
        raise ImproperlyConfigured(
            f"{purpose}: add {app!r} to INSTALLED_APPS and run manage.py migrate"
        )
    return importlib.import_module(f"{app}.models")
