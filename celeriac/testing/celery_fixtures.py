"""Celery's fixture names (``celery.contrib.pytest``'s), as aliases of the celeriac ones.

``celery_app`` *is* ``celeriac_app`` and ``celery_worker`` *is* ``celeriac_worker``, so a
migrating suite keeps working and a test asking for both gets one app. Celery's override
fixtures feed the celeriac ones: ``celery_config`` is the default ``celeriac_config``
(likewise parameters, includes, pool, worker parameters, class tasks, the trap), so
overriding either name configures the app.

:mod:`celeriac.testing.pytest` registers this module unless another plugin provides
Celery's names; ``pytest_plugins = ("celeriac.contrib.pytest",)`` registers it too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from celeriac import _state

__all__ = [
    "celeriac_app_trap",
    "celeriac_config",
    "celeriac_includes",
    "celeriac_parameters",
    "celeriac_session_class_tasks",
    "celeriac_worker_parameters",
    "celeriac_worker_pool",
    "celery_app",
    "celery_class_tasks",
    "celery_config",
    "celery_enable_logging",
    "celery_includes",
    "celery_parameters",
    "celery_session_app",
    "celery_session_worker",
    "celery_worker",
    "celery_worker_parameters",
    "celery_worker_pool",
    "depends_on_current_app",
    "use_celery_app_trap",
]


# -- Celery's override fixtures, with Celery's defaults ---------------------------------


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Override: settings of the test apps."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Override: keyword arguments of ``Celery(...)`` for the test apps."""
    return {}


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Override: modules to import before a worker starts."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """Override: the embedded worker's pool."""
    return "solo"


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Override: keyword arguments of ``start_worker``."""
    return {}


@pytest.fixture(scope="session")
def celery_class_tasks() -> Sequence[Any]:
    """Override: task classes to register on the session app."""
    return []


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Override to return True: any use of the current app then raises RuntimeError."""
    return False


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """Accepted for Celery's suites; celeriac's test apps never set up logging, so it
    changes nothing."""
    return False


# -- the celeriac overrides default to Celery's ------------------------------------------


@pytest.fixture(scope="session")
def celeriac_config(celery_config: Mapping[str, Any]) -> Mapping[str, Any]:
    """``celery_config`` (override either)."""
    return celery_config


@pytest.fixture(scope="session")
def celeriac_parameters(celery_parameters: Mapping[str, Any]) -> Mapping[str, Any]:
    """``celery_parameters`` (override either)."""
    return celery_parameters


@pytest.fixture(scope="session")
def celeriac_includes(celery_includes: Sequence[str]) -> Sequence[str]:
    """``celery_includes`` (override either)."""
    return celery_includes


@pytest.fixture(scope="session")
def celeriac_worker_pool(celery_worker_pool: str) -> str:
    """``celery_worker_pool`` (override either)."""
    return celery_worker_pool


@pytest.fixture(scope="session")
def celeriac_worker_parameters(celery_worker_parameters: Mapping[str, Any]) -> Mapping[str, Any]:
    """``celery_worker_parameters`` (override either)."""
    return celery_worker_parameters


@pytest.fixture(scope="session")
def celeriac_session_class_tasks(celery_class_tasks: Sequence[Any]) -> Sequence[Any]:
    """``celery_class_tasks`` (override either)."""
    return celery_class_tasks


@pytest.fixture(scope="session")
def celeriac_app_trap(use_celery_app_trap: bool) -> bool:
    """``use_celery_app_trap`` (override either)."""
    return use_celery_app_trap


# -- the apps and workers: the celeriac ones under Celery's names -------------------------


@pytest.fixture
def celery_app(celeriac_app: Any) -> Any:
    """``celeriac_app``."""
    return celeriac_app


@pytest.fixture
def celery_worker(celeriac_worker: Any) -> Any:
    """``celeriac_worker``."""
    return celeriac_worker


@pytest.fixture(scope="session")
def celery_session_app(celeriac_session_app: Any) -> Any:
    """``celeriac_session_app``."""
    return celeriac_session_app


@pytest.fixture(scope="session")
def celery_session_worker(celeriac_session_worker: Any) -> Any:
    """``celeriac_session_worker``."""
    return celeriac_session_worker


@pytest.fixture
def depends_on_current_app(celeriac_app: Any) -> None:
    """Make the test app current."""
    _state.set_current_app(celeriac_app)
