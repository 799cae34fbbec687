"""pytest fixtures for testing tasks: Celery's ``celery.contrib.pytest``, for celeriac.

Enable them in a ``conftest.py`` (as with Celery, nothing is registered by installing
the package, so this never clashes with Celery's plugin)::

    pytest_plugins = ("celeriac.contrib.pytest",)

Fixtures (same names and scopes as Celery's):

* ``celery_app``: a test app (:func:`~celeriac.contrib.testing.app.TestApp`, in-memory
  broker and results) per test, configured from ``celery_config`` and the test's
  ``@pytest.mark.celery(**settings)`` marker; ``celery_worker``: an embedded worker on it
  (:func:`~celeriac.contrib.testing.worker.start_worker`) for the test.
* ``celery_session_app`` / ``celery_session_worker``: the same for the whole session.
* Override to configure: ``celery_config``, ``celery_parameters`` (``Celery(...)``
  arguments), ``celery_includes`` (modules to import before the worker starts),
  ``celery_class_tasks`` (task classes to register on the session app),
  ``celery_worker_pool`` (``"solo"``), ``celery_worker_parameters`` (``start_worker``
  arguments), ``celery_enable_logging``, ``use_celery_app_trap`` (make any use of the
  current app fail); ``depends_on_current_app`` makes ``celery_app`` current.

Set ``NO_WORKER`` in the environment to skip starting workers (the fixtures yield None).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from celeriac import _state
from celeriac.contrib.testing import worker as testing_worker
from celeriac.contrib.testing.app import TestApp, setup_default_app

__all__ = [
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
    "pytest_configure",
    "use_celery_app_trap",
]

NO_WORKER = os.environ.get("NO_WORKER")


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``celery`` marker."""
    config.addinivalue_line(
        "markers", "celery(**overrides): override celery configuration for a test case"
    )


@contextmanager
def _create_app(
    enable_logging: bool = False,
    use_trap: bool = False,
    parameters: Mapping[str, Any] | None = None,
    **config: Any,
) -> Iterator[Any]:
    app = TestApp(
        set_as_current=False, enable_logging=enable_logging, config=config, **(parameters or {})
    )
    with setup_default_app(app, use_trap=use_trap):
        yield app


def _config(request: pytest.FixtureRequest, celery_config: Mapping[str, Any]) -> dict[str, Any]:
    """``celery_config`` with the overrides of the closest ``celery`` marker."""
    mark = request.node.get_closest_marker("celery")
    return {**celery_config, **(mark.kwargs if mark else {})}


def _import_all(modules: Sequence[str]) -> None:
    for module in modules:
        importlib.import_module(module)


def _fixture_app(
    request: pytest.FixtureRequest,
    config: Mapping[str, Any],
    parameters: Mapping[str, Any],
    enable_logging: bool,
    use_trap: bool,
) -> AbstractContextManager[Any]:
    """The test app the app fixtures make, from the override fixtures' values."""
    return _create_app(
        enable_logging=enable_logging,
        use_trap=use_trap,
        parameters=parameters,
        **_config(request, config),
    )


@contextmanager
def _fixture_worker(
    app: Any, includes: Sequence[str], pool: str, parameters: Mapping[str, Any]
) -> Iterator[Any]:
    """The embedded worker the worker fixtures start (None under ``NO_WORKER``)."""
    if NO_WORKER:
        yield None
        return
    _import_all(includes)
    with testing_worker.start_worker(app, pool=pool, **parameters) as started:
        yield started


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Override to return True: any use of the current app then raises RuntimeError."""
    return False


@pytest.fixture(scope="session")
def celery_session_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Any]:
    """The test app of the whole session (current unless the trap is on)."""
    with _fixture_app(
        request, celery_config, celery_parameters, celery_enable_logging, use_celery_app_trap
    ) as app:
        if not use_celery_app_trap:
            _state.set_current_app(app)
        yield app


@pytest.fixture(scope="session")
def celery_session_worker(
    request: pytest.FixtureRequest,
    celery_session_app: Any,
    celery_includes: Sequence[str],
    celery_class_tasks: Sequence[Any],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[Any]:
    """An embedded worker on ``celery_session_app`` for the whole session."""
    if not NO_WORKER:
        for task in celery_class_tasks:
            celery_session_app.register_task(task)
    with _fixture_worker(
        celery_session_app, celery_includes, celery_worker_pool, celery_worker_parameters
    ) as started:
        yield started


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """Override to return True to let the test app log (celeriac's apps never set up
    logging themselves, so this changes nothing)."""
    return False


@pytest.fixture(scope="session")
def celery_includes() -> Sequence[str]:
    """Override: modules to import before a worker starts (tasks, signal handlers)."""
    return ()


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """Override: the embedded worker's pool (``solo``, ``threads``, ``prefork``)."""
    return "solo"


@pytest.fixture(scope="session")
def celery_config() -> Mapping[str, Any]:
    """Override: settings of the test apps."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> Mapping[str, Any]:
    """Override: keyword arguments of ``Celery(...)`` for the test apps."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> Mapping[str, Any]:
    """Override: keyword arguments of ``start_worker`` (e.g. ``queues``)."""
    return {}


@pytest.fixture
def celery_app(
    request: pytest.FixtureRequest,
    celery_config: Mapping[str, Any],
    celery_parameters: Mapping[str, Any],
    celery_enable_logging: bool,
    use_celery_app_trap: bool,
) -> Iterator[Any]:
    """A test app for one test."""
    with _fixture_app(
        request, celery_config, celery_parameters, celery_enable_logging, use_celery_app_trap
    ) as app:
        yield app


@pytest.fixture(scope="session")
def celery_class_tasks() -> Sequence[Any]:
    """Override: task classes to register on ``celery_session_app``."""
    return []


@pytest.fixture
def celery_worker(
    request: pytest.FixtureRequest,
    celery_app: Any,
    celery_includes: Sequence[str],
    celery_worker_pool: str,
    celery_worker_parameters: Mapping[str, Any],
) -> Iterator[Any]:
    """An embedded worker on ``celery_app`` for one test."""
    with _fixture_worker(
        celery_app, celery_includes, celery_worker_pool, celery_worker_parameters
    ) as started:
        yield started


@pytest.fixture
def depends_on_current_app(celery_app: Any) -> None:
    """Make ``celery_app`` the current app."""
    _state.set_current_app(celery_app)
