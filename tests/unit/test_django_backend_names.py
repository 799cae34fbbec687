"""Celery's Django result backend names: ``django-db`` selects django-celery-results' tables,
``django-cache`` is refused at start saying what to use instead.

The tables themselves are exercised against a real Django project in
``tests/examples/test_django_results.py``; here only how the names are taken, and that
``django-db`` without Django configured fails with a message saying what is missing.
"""

from __future__ import annotations

import asyncio
import os
import types

import pytest

from celeriac import Celery
from celeriac.backends import backend_from_url
from celeriac.engines import engine_for, offers
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import get_serializer

pytest.importorskip("django", reason="Django is a test dependency (make install)")


def _start_backend(app: Celery) -> None:
    asyncio.run(app.aget_backend())


def test_django_db_names_the_django_engine() -> None:
    engine = engine_for("django-db")
    assert engine is not None and engine.name == "django"
    assert offers("django-db", "results") and not offers("django-db", "broker")
    backend = backend_from_url("django-db", serializer=get_serializer("json"), expires=None)
    assert type(backend).__name__ == "DjangoBackend" and backend.supports_chords is False


def test_django_db_without_django_settings_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    from django.conf import settings  # noqa: PLC0415

    if settings.configured:
        pytest.skip("Django's settings were configured by an earlier test in this process")
    app = Celery("django-names", broker="memory://", backend="django-db")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_SETTINGS_MODULE"):
        _start_backend(app)


def test_django_cache_is_refused_naming_the_alternatives() -> None:
    app = Celery("django-names", broker="memory://", backend="django-cache")
    with pytest.raises(ImproperlyConfigured, match="django-cache") as caught:
        _start_backend(app)
    assert "redis://" in str(caught.value) and "django-db" in str(caught.value)


def test_celery_namespace_setting_reaches_the_backend() -> None:
    """``CELERY_RESULT_BACKEND`` read from Django-style settings with ``namespace="CELERY"``."""
    settings = types.SimpleNamespace(CELERY_RESULT_BACKEND="django-cache")
    app = Celery("django-names", broker="memory://")
    app.config_from_object(settings, namespace="CELERY")
    assert app.result_backend_url == "django-cache"
    with pytest.raises(ImproperlyConfigured, match="django-cache"):
        _start_backend(app)
