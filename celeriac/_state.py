"""Process-wide state: the current app and the ``@shared_task`` constructors.

Kept in its own leaf module so task.py and result.py can find the current app
without importing app.py (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "get_current_app",
    "set_current_app",
    "set_default_app_factory",
    "shared_task_constructors",
]

_current: Any = None
_default_factory: Callable[[], Any] | None = None
_shared: list[Callable[[Any], Any]] = []


def set_current_app(app: Any) -> None:
    """Make ``app`` the current one (done by every new app unless told otherwise)."""
    global _current
    _current = app


def set_default_app_factory(factory: Callable[[], Any]) -> None:
    """Register how to make a default app when none exists (app.py does this)."""
    global _default_factory
    _default_factory = factory


def get_current_app() -> Any:
    """The current app, creating a default one if needed."""
    global _current
    if _current is None:
        if _default_factory is None:
            raise RuntimeError("celeriac.app is not imported")
        _current = _default_factory()
    return _current


def shared_task_constructors() -> list[Callable[[Any], Any]]:
    """Callables that register a shared task on a given app."""
    return _shared
