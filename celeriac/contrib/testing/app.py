"""Apps for tests: in-memory broker and results, and a clean current app afterwards.

The same names as Celery's ``celery.contrib.testing.app``: :func:`TestApp`,
:func:`setup_default_app`, :func:`set_trap`, :data:`DEFAULT_TEST_CONFIG`.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn

from celeriac import _state
from celeriac.app import Celery
from celeriac.contrib.testing import tasks  # noqa: F401  (registers celery.ping)

__all__ = ["DEFAULT_TEST_CONFIG", "TestApp", "Trap", "set_trap", "setup_default_app"]

DEFAULT_TEST_CONFIG: dict[str, Any] = {
    "accept_content": {"json"},
    "enable_utc": True,
    "timezone": "UTC",
    "broker_url": "memory://",
    "result_backend": "memory://",
    "broker_heartbeat": 0,
}
"""The test app's settings: Celery's, with celeriac's in-memory result store, less the
logging ones (celeriac's apps never touch logging, so they would only warn)."""


def TestApp(  # Celery's name
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    enable_logging: bool = False,
    set_as_current: bool = False,
    backend: str | None = None,
    broker: str | None = None,
    **kwargs: Any,
) -> Celery:
    """An app for tests: :data:`DEFAULT_TEST_CONFIG` updated with ``config``.

    Each app gets memory stores of its own (``memory://<random>``) unless configured
    otherwise, so tests do not see each other's messages. ``enable_logging`` is
    accepted for Celery's signature: celeriac's apps never set up logging themselves.
    """
    settings = {**copy.deepcopy(DEFAULT_TEST_CONFIG), **dict(config or {})}
    own = uuid.uuid4().hex
    for key, given in (("broker_url", broker), ("result_backend", backend)):
        if given is not None:
            settings.pop(key, None)
        elif settings.get(key) == "memory://":
            settings[key] = f"memory://{own}"
    app = Celery(
        name or "celery.tests",
        broker=broker,
        backend=backend,
        set_as_current=set_as_current,
        **kwargs,
    )
    app.conf.update(settings)
    return app


class Trap:
    """Stands in for the current app and fails on any use: code under test must pass its
    app explicitly."""

    def __getattr__(self, name: str) -> NoReturn:
        if name in {"_is_coroutine", "__func__"}:  # looked up by unittest.mock
            raise AttributeError(name)
        raise RuntimeError("Test depends on current_app")


@contextmanager
def set_trap(app: Celery) -> Iterator[None]:
    """While inside, the current app is a :class:`Trap`."""
    previous = _state._current
    _state.set_current_app(Trap())
    try:
        yield
    finally:
        _state.set_current_app(previous)


@contextmanager
def setup_default_app(app: Celery, use_trap: bool = False) -> Iterator[None]:
    """Restore the current app on exit, and close ``app`` (its connections and stores)."""
    previous = _state._current
    try:
        if use_trap:
            with set_trap(app):
                yield
        else:
            yield
    finally:
        _state.set_current_app(previous)
        if app is not previous:
            app.close()
