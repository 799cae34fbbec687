"""The Celery app that ``celeriac flower`` hands to the real Flower.

Flower is a Celery program: it loads a ``celery.Celery`` app with ``-A`` and cannot load a
celeriac one. ``celeriac -A proj flower`` therefore starts ``celery -A
celeriac.contrib.flower:app flower …``, and this module builds that app at import from the
celeriac app named in ``CELERIAC_FLOWER_APP``: the same broker, result backend and their
options, the same event and control exchanges, and every task name, registered as a stub so
that Flower's ``/api/task/async-apply/<name>`` finds it (the stub never runs: Flower only
publishes). Flower then watches celeriac workers through Celery's events and remote control,
which celeriac workers speak.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery as CeleryApp

from celeriac.cli.loading import find_app

__all__ = ["COPIED_SETTINGS", "app", "bridge"]

#: The settings Flower's app needs to reach the same broker, store and workers.
COPIED_SETTINGS = (
    "broker_url",
    "result_backend",
    "broker_transport_options",
    "result_backend_transport_options",
    "broker_use_ssl",
    "redis_backend_use_ssl",
    "broker_connection_retry_on_startup",
    "task_default_queue",
    "task_default_exchange",
    "task_default_routing_key",
    "task_routes",
    "task_serializer",
    "result_serializer",
    "accept_content",
    "result_accept_content",
    "result_extended",
    "event_exchange",
    "event_serializer",
    "control_exchange",
    "timezone",
    "enable_utc",
)


def bridge(spec: str | None, broker: str | None = None, backend: str | None = None) -> Any:
    """A ``celery.Celery`` app mirroring the celeriac app ``spec`` (``-A`` form)."""
    source = find_app(spec)
    mirror = CeleryApp(source.main or "celeriac", set_as_current=True)
    settings = {name: source.conf[name] for name in COPIED_SETTINGS}
    settings = {name: value for name, value in settings.items() if value is not None}
    if broker:
        settings["broker_url"] = broker
    if backend:
        settings["result_backend"] = backend
    mirror.conf.update(settings)
    for name in sorted(source.tasks):
        if not name.startswith("celery."):
            _register_stub(mirror, name)
    return mirror


def _register_stub(mirror: Any, name: str) -> None:
    def stub(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"{name} runs on celeriac workers, not inside Flower")

    mirror.task(name=name)(stub)


app = bridge(
    os.environ.get("CELERIAC_FLOWER_APP"),
    os.environ.get("CELERIAC_FLOWER_BROKER"),
    os.environ.get("CELERIAC_FLOWER_BACKEND"),
)
