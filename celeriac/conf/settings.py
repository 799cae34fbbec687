"""``app.conf``: a mapping of settings under Celery's names, with attribute access.

Every setting of the table (:mod:`celeriac.conf.table`) is readable from the start with
its default (``app.conf.broker_pool_limit == 10``); Celery 3's uppercase names read and
write the same entries (``conf.CELERY_ALWAYS_EAGER`` is ``conf.task_always_eager``). Sources
are merged in this order (later wins): defaults, ``Celery(...)`` keyword arguments,
``config_from_object``/``config_from_envvar``, ``app.conf.update`` and assignments, and
finally the environment for the broker and backend URLs (``CELERIAC_BROKER_URL``/
``CELERY_BROKER_URL``, ``CELERIAC_RESULT_BACKEND``/``CELERY_RESULT_BACKEND``) when not set
explicitly. A name the table does not know is kept, as Celery keeps it, with a warning
naming the closest known names (:func:`celeriac.conf.checks.warn_unknown`).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from celeriac.conf import report
from celeriac.conf.checks import looks_like_celery_name, warn_unknown
from celeriac.conf.defaults import DEFAULTS
from celeriac.conf.table import ALIASES, SETTINGS
from celeriac.exceptions import ImproperlyConfigured

__all__ = ["Settings", "canonical_name", "load_object", "normalize_key"]

_ENV_NAMES = {
    "broker_url": ("CELERIAC_BROKER_URL", "CELERY_BROKER_URL"),
    "result_backend": ("CELERIAC_RESULT_BACKEND", "CELERY_RESULT_BACKEND"),
}


def canonical_name(key: str) -> str:
    """The current name of a setting given by its current or its Celery 3 name."""
    return ALIASES.get(key, key)


def normalize_key(key: str, namespace: str | None = None) -> str | None:
    """Map a settings-file name to Celery's lowercase name, or None to ignore it.

    With ``namespace='CELERY'`` (Django style) only ``CELERY_*`` names are read, so
    ``CELERY_BROKER_URL`` becomes ``broker_url``. Without one, other uppercase names are
    module constants, not settings; those that look like a misspelt Celery 3 name
    (``CELERY_ALWAYS_EAGR``) are reported with the closest names.
    """
    if namespace:
        prefix = namespace.rstrip("_") + "_"
        if not key.startswith(prefix):
            return None
        key = key[len(prefix) :]
        return key.lower() if key.isupper() else key
    if key in ALIASES:
        return ALIASES[key]
    if key.isupper():
        if looks_like_celery_name(key):
            warn_unknown(key)
        return None
    return key


def load_object(path: str) -> Any:
    """Import a settings object: ``'module'``, ``'module:attr'`` or ``'module.attr'``."""
    module_name, _, attribute = path.partition(":")
    if attribute:
        return _attribute(importlib.import_module(module_name), attribute, path)
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as exc:
        parent, _, attribute = path.rpartition(".")
        if not parent or exc.name not in (path, parent):
            raise
        return _attribute(importlib.import_module(parent), attribute, path)


def _attribute(module: Any, dotted: str, path: str) -> Any:
    obj = module
    for part in dotted.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"{path!r}: {type(obj).__name__} has no attribute {part!r}") from exc
    return obj


def _is_code(value: Any) -> bool:
    """Modules, classes and functions found in a settings module are not settings."""
    return inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value)


def _public_attributes(obj: Any) -> Iterator[tuple[str, Any]]:
    for key in dir(obj):
        if not key.startswith("_"):
            yield key, getattr(obj, key)


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
        name = canonical_name(key)
        values: dict[str, Any] = self._values
        if name in _ENV_NAMES and name not in self._explicit:
            for env in _ENV_NAMES[name]:
                if os.environ.get(env):
                    return os.environ[env]
        return values[name]

    def __setitem__(self, key: str, value: Any) -> None:
        name = canonical_name(key)
        if name not in SETTINGS and name not in self._values:
            warn_unknown(name)
        self._values[name] = value
        self._explicit.add(name)
        object.__setattr__(self, "_version", self._version + 1)

    def __delitem__(self, key: str) -> None:
        """Forget a value: a known setting returns to its default, an unknown one goes."""
        name = canonical_name(key)
        if name not in self._values:
            raise KeyError(key)
        if name in SETTINGS:
            self._values[name] = copy.deepcopy(DEFAULTS[name])
        else:
            del self._values[name]
        self._explicit.discard(name)
        object.__setattr__(self, "_version", self._version + 1)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and canonical_name(key) in self._values

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
        return canonical_name(key) in self._explicit

    value_set_for = is_set  # Celery's name

    # loading
    def from_object(self, obj: Any, namespace: str | None = None, *, silent: bool = False) -> None:
        """Load settings from a module, class, dict or import path (``'pkg.celeryconfig'``,
        ``'django.conf:settings'``)."""
        if isinstance(obj, str):
            try:
                obj = load_object(obj)
            except ImportError as exc:
                if silent:
                    return
                raise ImproperlyConfigured(f"cannot import settings {obj!r}: {exc}") from exc
        is_mapping = isinstance(obj, Mapping)
        items = obj.items() if is_mapping else _public_attributes(obj)
        for key, value in items:
            name = normalize_key(key, namespace)
            if name is None or (not is_mapping and name not in SETTINGS and _is_code(value)):
                continue
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

    # views, as Celery's Settings offers them
    def without_defaults(self) -> dict[str, Any]:
        """The settings the user set."""
        return {key: self._values[key] for key in self._explicit}

    def first(self, *keys: str) -> Any:
        """The value of the first of ``keys`` that is not None."""
        return next((v for v in (self.get(k) for k in keys) if v is not None), None)

    def get_by_parts(self, *parts: str) -> Any:
        """``get_by_parts('worker', 'disable_rate_limits')`` is ``worker_disable_rate_limits``."""
        return self["_".join(part for part in parts if part)]

    def find_value_for_key(self, name: str, namespace: str = "celery") -> Any:
        """The value of ``name`` in ``namespace`` (``('extended', 'result')``), else ``name``."""
        prefixed = f"{namespace.lower()}_{name.lower()}"
        return self[prefixed] if prefixed in self else self[name.lower()]

    def table(self, with_defaults: bool = False, censored: bool = True) -> dict[str, Any]:
        """The settings the user set (or all of them), with secrets masked when ``censored``."""
        values = dict(self) if with_defaults else self.without_defaults()
        return report.censor(values) if censored else values

    def humanize(self, with_defaults: bool = False, censored: bool = True) -> str:
        """One ``name: value`` line per setting of :meth:`table`."""
        return report.humanize(self.table(with_defaults, censored))
