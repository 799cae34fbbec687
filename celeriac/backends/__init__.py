"""Result backends, chosen by the result_backend URL's scheme (see :mod:`celeriac.engines`)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from celeriac.backends.base import BlockingWaiter, ChordPart, Meta, ResultBackend
from celeriac.engines import engine_for, implementation, offers, scheme_of
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import Serializer

__all__ = [
    "BlockingWaiter",
    "ChordPart",
    "Meta",
    "ResultBackend",
    "backend_from_url",
    "blocking_waiter_from_url",
    "can_hold_results",
]


def can_hold_results(broker_url: str) -> bool:
    """Whether the broker's own store can also keep results (the celeriac default)."""
    return offers(broker_url, "broker") and offers(broker_url, "results")


def backend_from_url(
    url: str,
    *,
    serializer: Serializer,
    expires: float | None,
    options: Mapping[str, Any] | None = None,
) -> ResultBackend:
    """Create the backend for a result_backend URL (not yet connected)."""
    _refuse_django_names(url)
    scheme_of(url)  # a clear error for something that is not a URL
    cls, url = implementation(url, "results", "result backend")
    backend: ResultBackend = cls(
        url, serializer=serializer, expires=expires, options=dict(options or {})
    )
    return backend


def blocking_waiter_from_url(
    url: str, *, serializer: Serializer, options: Mapping[str, Any] | None = None
) -> BlockingWaiter | None:
    """A waiter for the sync API that runs in the calling thread, or None.

    Only some backends have one, and not for every location (see each implementation).
    """
    engine = engine_for(url)
    if engine is None or engine.waiter is None:
        return None
    factory, url = implementation(url, "waiter", "result backend")
    waiter: BlockingWaiter | None = factory(url, serializer=serializer, options=dict(options or {}))
    return waiter


_DJANGO_NAMES = {"django-db": "django-celery-results", "django-cache": "django-celery-results"}
"""Celery's result backend names provided by Django packages, and the package."""


def _refuse_django_names(url: str) -> None:
    """Refuse ``django-db``/``django-cache`` at start with a message naming the package.

    Writing django-celery-results' tables is not implemented yet (issue #20): without this
    the name would fail later as "not a URL", which does not say what is missing.
    """
    package = _DJANGO_NAMES.get(url.strip().lower())
    if package is None:
        return
    if importlib.util.find_spec(package.replace("-", "_")) is None:
        raise ImproperlyConfigured(
            f"result_backend={url!r} needs the {package} package, which is not installed "
            f"(pip install {package})"
        )
    raise ImproperlyConfigured(
        f"result_backend={url!r} ({package}'s tables) is not supported yet; use "
        "db+postgresql://... (celeriac's own tables) or redis://"
    )
