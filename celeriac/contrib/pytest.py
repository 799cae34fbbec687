"""Celery's ``celery.contrib.pytest`` path, for ``pytest_plugins = ("celeriac.contrib.pytest",)``.

Installing celeriac already registers the fixtures (:mod:`celeriac.testing.pytest`); this
module re-exports them for suites that name the plugin, or run with plugin autoloading off.
"""

from __future__ import annotations

from celeriac.testing.celery_fixtures import (
    celeriac_app_trap,
    celeriac_config,
    celeriac_includes,
    celeriac_parameters,
    celeriac_session_class_tasks,
    celeriac_worker_parameters,
    celeriac_worker_pool,
    celery_app,
    celery_class_tasks,
    celery_config,
    celery_enable_logging,
    celery_includes,
    celery_parameters,
    celery_session_app,
    celery_session_worker,
    celery_worker,
    celery_worker_parameters,
    celery_worker_pool,
    depends_on_current_app,
    use_celery_app_trap,
)
from celeriac.testing.pytest import (
    celeriac_app,
    celeriac_session_app,
    celeriac_session_worker,
    celeriac_worker,
    pytest_configure,
)

__all__ = [
    "celeriac_app",
    "celeriac_app_trap",
    "celeriac_config",
    "celeriac_includes",
    "celeriac_parameters",
    "celeriac_session_app",
    "celeriac_session_class_tasks",
    "celeriac_session_worker",
    "celeriac_worker",
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
    "pytest_configure",
    "use_celery_app_trap",
]
