"""``app.conf``: a mapping of settings under Celery's names, with attribute access.

Sources are merged in this order (later wins): defaults, ``Celery(...)`` keyword
arguments, ``config_from_object``/``config_from_envvar``, ``app.conf.update`` and
assignments, and finally the environment for the broker and backend URLs
(``CELERIAC_BROKER_URL``/``CELERY_BROKER_URL``, ``CELERIAC_RESULT_BACKEND``/
``CELERY_RESULT_BACKEND``) when not set explicitly.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from celeriac.conf.defaults import DEFAULTS, OLD_NAMES
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["Settings", "normalize_key"]

_ENV_NAMES = {
    "broker_url": ("CELERIAC_BROKER_URL", "CELERY_BROKER_URL"),
    "result_backend": ("CELERIAC_RESULT_BACKEND", "CELERY_RESULT_BACKEND"),
}


def normalize_key(key: str, namespace: str | None = None) -> str | None:
    """Map a settings-file name to Celery's lowercase name, or None to ignore it.

    With ``namespace='CELERY'`` (Django style) only ``CELERY_*`` names are read, so
    ``CELERY_BROKER_URL`` becomes ``broker_url``.
    """
    if namespace:
        prefix = namespace.rstrip("_") + "_"
        if not key.startswith(prefix):
            return None
        key = key[len(prefix) :]
        return key.lower() if key.isupper() else key
    if key in OLD_NAMES:
        return OLD_NAMES[key]
    if key.isupper():
        return None  # other uppercase module globals are not settings
    return key


class Settings(MutableMapping[str, Any]):
    """Celery-named settings; ``conf.broker_url`` and ``conf['broker_url']`` are the same."""

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_values", copy.deepcopy(DEFAULTS))
        object.__setattr__(self, "_explicit", set())
        object.__setattr__(self, "_version", 0)
        if initial:
            self.update(initial)

    # mapping protocol
    def __getitem__(self, key: str) -> Any:
        values: dict[str, Any] = self._values
        if key in _ENV_NAMES and key not in self._explicit:
            for env in _ENV_NAMES[key]:
                if os.environ.get(env):
                    return os.environ[env]
        return values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        name = OLD_NAMES.get(key, key)
        self._values[name] = value
        self._explicit.add(name)
        object.__setattr__(self, "_version", self._version + 1)

    def __delitem__(self, key: str) -> None:
        del self._values[key]
        self._explicit.discard(key)
        object.__setattr__(self, "_version", self._version + 1)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    # attribute access, as Celery users write it
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no setting named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    @property
    def version(self) -> int:
        """A number that changes whenever a setting is assigned or deleted (for caches)."""
        version: int = self._version
        return version

    def is_set(self, key: str) -> bool:
        """True when the user (not the defaults) gave this setting a value."""
        return key in self._explicit

    def from_object(self, obj: Any, namespace: str | None = None, *, silent: bool = False) -> None:
        """Load settings from a module, class, dict or import path (``'pkg.celeryconfig'``)."""
        if isinstance(obj, str):
            try:
                obj = importlib.import_module(obj)
            except ImportError as exc:
                if silent:
                    return
                raise ImproperlyConfigured(f"cannot import settings module {obj!r}: {exc}") from exc
        items = obj.items() if isinstance(obj, Mapping) else _public_attributes(obj)
        for key, value in items:
            name = normalize_key(key, namespace)
            if name is not None:
                self[name] = value

    def from_envvar(
        self, variable: str, namespace: str | None = None, *, silent: bool = False
    ) -> None:
        """Load settings from the module named in an environment variable."""
        module = os.environ.get(variable)
        if not module:
            if silent:
                return
            raise ImproperlyConfigured(f"environment variable {variable} is not set")
        self.from_object(module, namespace, silent=silent)

    def without_defaults(self) -> dict[str, Any]:
        """The settings the user set."""
        return {key: self._values[key] for key in self._explicit}


def _public_attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    for key in dir(obj):
        if not key.startswith("_"):
            yield key, getattr(obj, key)
