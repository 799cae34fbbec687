"""The pytest plugin, registered by installing celeriac (entry point ``celeriac``).

Fixtures (all overridable in a ``conftest.py``):

* ``celeriac_app``: a test app (:func:`~celeriac.contrib.testing.app.TestApp`: in-memory
  broker and results of its own) per test, configured from ``celeriac_config`` and the
  test's ``@pytest.mark.celeriac(**settings)`` (and Celery's ``@pytest.mark.celery``);
  ``celeriac_worker``: an embedded worker on it, started and stopped around the test.
* ``celeriac_session_app`` / ``celeriac_session_worker``: the same for the whole session.
* Overrides: ``celeriac_config``, ``celeriac_parameters`` (``Celery(...)`` arguments),
  ``celeriac_includes`` (modules imported before a worker starts),
  ``celeriac_session_class_tasks``, ``celeriac_worker_pool``, ``celeriac_worker_parameters``
  (``start_worker`` arguments), ``celeriac_app_trap`` (any use of the current app fails).
* ``celeriac_clock``: a :class:`~celeriac.testing.clock.FakeClock` celeriac reads during
  the test (``celeriac_clock.advance(3600)`` makes a one-hour countdown due).

Celery's names (``celery_app``, ``celery_worker``, ``celery_config``, …) come from
:mod:`celeriac.testing.celery_fixtures`, which this plugin registers unless another
plugin already provides them (Celery's own ``celery.contrib.pytest``, pytest-celery):
a suite that runs real Celery's fixtures keeps them. A plugin loaded later (a
``conftest.py``'s ``pytest_plugins``) wins anyway: pytest prefers the later plugin.

Set ``NO_WORKER`` in the environment to skip starting workers (the fixtures yield None).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from celeriac import _state
from celeriac.contrib.testing import worker as testing_worker
from celeriac.contrib.testing.app import TestApp, setup_default_app
from celeriac.testing.clock import FakeClock

__all__ = [
    "CELERY_NAMES_PLUGIN",
    "MARKERS",
    "celeriac_app",
    "celeriac_app_trap",
    "celeriac_clock",
    "celeriac_config",
    "celeriac_includes",
    "celeriac_parameters",
    "celeriac_session_app",
    "celeriac_session_class_tasks",
    "celeriac_session_worker",
    "celeriac_worker",
    "celeriac_worker_parameters",
    "celeriac_worker_pool",
    "make_app",
    "make_worker",
    "pytest_configure",
    "pytest_load_initial_conftests",
]

CELERY_NAMES_PLUGIN = "celeriac.testing.celery_fixtures"
"""The module (and plugin name) of the Celery fixture names: ``-p no:<it>`` turns them off."""

MARKERS = {
    "celeriac": "celeriac(**settings): settings of the celeriac test app of this test",
    "celery": "celery(**overrides): override celery configuration for a test case",
}
"""The markers the fixtures read (``celery`` is Celery's, registered only when absent)."""

# Fixtures only a plugin of Celery's names defines: its presence means "keep theirs".
_CELERY_FIXTURES = ("celery_app", "celery_worker", "celery_session_app")
_OURS = frozenset({CELERY_NAMES_PLUGIN, "celeriac.contrib.pytest"})


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Register the Celery fixture names unless a plugin loaded so far provides them.

    Runs after the entry-point and ``-p`` plugins are loaded and before the first
    ``conftest.py``, so those loaded later still win over ours.
    """
    manager = early_config.pluginmanager
    if manager.has_plugin(CELERY_NAMES_PLUGIN) or manager.is_blocked(CELERY_NAMES_PLUGIN):
        return
    if any(_provides_celery_names(plugin) for plugin in manager.get_plugins()):
        return
    manager.register(importlib.import_module(CELERY_NAMES_PLUGIN), CELERY_NAMES_PLUGIN)


def _provides_celery_names(plugin: object) -> bool:
    """Whether ``plugin`` (not one of ours) defines Celery's app and worker fixtures."""
    if getattr(plugin, "__name__", "") in _OURS:
        return False
    return any(hasattr(plugin, name) for name in _CELERY_FIXTURES)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``celeriac`` marker, and ``celery`` unless a plugin did already."""
    known = {line.split("(")[0].split(":")[0].strip() for line in config.getini("markers")}
    for name, line in MARKERS.items():
        if name not in known:
            config.addinivalue_line("markers", line)


def _settings(request: pytest.FixtureRequest, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with the closest ``celery`` marker's settings, then ``celeriac``'s."""
    settings = dict(config)
    for name in ("celery", "celeriac"):
        mark = request.node.get_closest_marker(name)
        if mark is not None:
            settings.update(mark.kwargs)
    return settings


@contextmanager
def make_app(
    request: pytest.FixtureRequest,
    config: Mapping[str, Any],
    parameters: Mapping[str, Any],
    use_trap: bool = False,
) -> Iterator[Any]:
    """The test app of the app fixtures (closed, and the current app restored, after)."""
    app = TestApp(set_as_current=False, config=_settings(request, config), **dict(parameters))
    with setup_default_app(app, use_trap=use_trap):
        yield app


@contextmanager
def make_worker(
    app: Any, includes: Sequence[str], pool: str, parameters: Mapping[str, Any]
) -> Iterator[Any]:
    """The embedded worker of the worker fixtures (None under ``NO_WORKER``)."""
    if os.environ.get("NO_WORKER"):
        yield None
        return
    for module in includes:
        importlib.import_module(module)
    with testing_worker.start_worker(app, pool=pool, **dict(parameters)) as started:
        yield started


@pytest.fixture(scope="session")
def celeriac_config() -> Mapping[str, Any]:
    """Override: settings of the test apps."""
    return {}


@pytest.fixture(scope="session")
def celeriac_parameters() -> Mapping[str, Any]:
    """Override: keyword arguments of ``Celery(...)`` for the test apps."""
    return {}


@pytest.fixture(scope="session")
def celeriac_includes() -> Sequence[str]:
    """Override: modules to import before a worker starts (tasks, signal handlers)."""
    return ()


@pytest.fixture(scope="session")
def celeriac_worker_pool() -> str:
    """Override: the embedded worker's pool (``solo``, ``threads``)."""
    return "solo"


@pytest.fixture(scope="session")
def celeriac_worker_parameters() -> Mapping[str, Any]:
    """Override: keyword arguments of ``start_worker`` (e.g. ``queues``)."""
    return {}


@pytest.fixture(scope="session")
def celeriac_session_class_tasks() -> Sequence[Any]:
    """Override: task classes to register on ``celeriac_session_app``."""
    return []


@pytest.fixture(scope="session")
def celeriac_app_trap() -> bool:
    """Override to return True: any use of the current app then raises RuntimeError."""
    return False


@pytest.fixture
def celeriac_app(
    request: pytest.FixtureRequest,
    celeriac_config: Mapping[str, Any],
    celeriac_parameters: Mapping[str, Any],
    celeriac_app_trap: bool,
) -> Iterator[Any]:
    """A test app for one test."""
    with make_app(request, celeriac_config, celeriac_parameters, celeriac_app_trap) as app:
        yield app


@pytest.fixture
def celeriac_worker(
    celeriac_app: Any,
    celeriac_includes: Sequence[str],
    celeriac_worker_pool: str,
    celeriac_worker_parameters: Mapping[str, Any],
) -> Iterator[Any]:
    """An embedded worker on ``celeriac_app`` for one test."""
    with make_worker(
        celeriac_app, celeriac_includes, celeriac_worker_pool, celeriac_worker_parameters
    ) as started:
        yield started


@pytest.fixture(scope="session")
def celeriac_session_app(
    request: pytest.FixtureRequest,
    celeriac_config: Mapping[str, Any],
    celeriac_parameters: Mapping[str, Any],
    celeriac_app_trap: bool,
) -> Iterator[Any]:
    """The test app of the whole session (current unless the trap is on)."""
    with make_app(request, celeriac_config, celeriac_parameters, celeriac_app_trap) as app:
        if not celeriac_app_trap:
            _state.set_current_app(app)
        yield app


@pytest.fixture(scope="session")
def celeriac_session_worker(
    celeriac_session_app: Any,
    celeriac_includes: Sequence[str],
    celeriac_session_class_tasks: Sequence[Any],
    celeriac_worker_pool: str,
    celeriac_worker_parameters: Mapping[str, Any],
) -> Iterator[Any]:
    """An embedded worker on ``celeriac_session_app`` for the whole session."""
    if not os.environ.get("NO_WORKER"):
        for task in celeriac_session_class_tasks:
            celeriac_session_app.register_task(task)
    with make_worker(
        celeriac_session_app, celeriac_includes, celeriac_worker_pool, celeriac_worker_parameters
    ) as started:
        yield started


@pytest.fixture
def celeriac_clock() -> Iterator[FakeClock]:
    """A fake wall clock celeriac reads during the test (see :mod:`celeriac.testing.clock`)."""
    fake = FakeClock().install()
    try:
        yield fake
    finally:
        fake.uninstall()
