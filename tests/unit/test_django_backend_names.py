"""Celery's Django result backend names (``django-db``) are refused at start, naming the package.

Writing django-celery-results' tables is issue #20; until then the name must not fail as
"not a URL" or, worse, be taken for something else.
"""

from __future__ import annotations

import asyncio
import importlib.util
import types

import pytest

from celeriac import Celery
from celeriac.exceptions import ImproperlyConfigured

INSTALLED = importlib.util.find_spec("django_celery_results") is not None


def _start_backend(app: Celery) -> None:
    asyncio.run(app.aget_backend())


@pytest.mark.parametrize("name", ["django-db", "django-cache"])
def test_result_backend_setting_is_refused_naming_the_package(name: str) -> None:
    app = Celery("django-names", broker="memory://", backend=name)
    with pytest.raises(ImproperlyConfigured, match="django-celery-results") as caught:
        _start_backend(app)
    expected = "not supported yet" if INSTALLED else "not installed"
    assert expected in str(caught.value)


def test_celery_namespace_setting_is_refused_too() -> None:
    """``CELERY_RESULT_BACKEND`` read from Django-style settings with ``namespace="CELERY"``."""
    settings = types.SimpleNamespace(CELERY_RESULT_BACKEND="django-db")
    app = Celery("django-names", broker="memory://")
    app.config_from_object(settings, namespace="CELERY")
    assert app.result_backend_url == "django-db"
    with pytest.raises(ImproperlyConfigured, match="django-celery-results"):
        _start_backend(app)
