"""Result backends, chosen by the result_backend URL's scheme (see :mod:`celeriac.engines`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celeriac.backends.base import BlockingWaiter, ChordPart, Meta, ResultBackend
from celeriac.engines import engine_for, engine_for_name, implementation, offers, scheme_of
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
    if expires is not None and expires < 0:
        raise ImproperlyConfigured(f"result_expires must not be negative: {expires!r}")
    _refuse_django_cache(url)
    if engine_for_name(url) is None:
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


def _refuse_django_cache(url: str) -> None:
    """Refuse Celery's ``django-cache`` at start, saying what to use instead.

    Celery's name stores results through Django's cache framework, whose backends offer
    no notification and no atomic step that chords could use; the cache's own server
    (Redis, usually) serves results better directly.
    """
    if url.strip().lower() == "django-cache":
        raise ImproperlyConfigured(
            "result_backend='django-cache' (Django's cache framework) is not supported: point "
            "result_backend at the cache's server (redis://...), or use 'django-db' "
            "(django-celery-results' tables)"
        )
