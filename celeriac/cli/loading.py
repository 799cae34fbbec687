"""Find the app named by ``-A``: ``module``, ``module:attribute`` or ``module.attribute``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from celeriac.app import Celery, current_app
from celeriac.conf.settings import Settings

__all__ = ["apply_config_module", "change_directory", "check_loader", "find_app"]


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise click.UsageError(f"cannot import app module {name!r}: {exc}") from exc
        raise


def _named_app(module: Any) -> Celery | None:
    """The module's ``app`` or ``celery`` attribute when it is an app (Celery checks these
    first); a ``celery`` submodule is searched as a module."""
    for attr in ("app", "celery"):
        found = getattr(module, attr, None)
        if isinstance(found, Celery):
            return found
    return None


def _any_app(module: Any) -> Celery | None:
    for value in vars(module).values():
        if isinstance(value, Celery):
            return value
    return None


def _celery_submodule(package: Any) -> Any:
    """``<package>.celery`` imported (Celery's layout for Django projects), or None."""
    if getattr(package, "__path__", None) is None:
        return None
    name = f"{package.__name__}.celery"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def _app_in(module: Any) -> Celery | None:
    """Celery's order: ``module.app``, ``module.celery``, then the app of the package's
    ``celery`` module (imported if needed), then any app among the module's globals."""
    app = _named_app(module)
    if app is not None:
        return app
    submodule = _celery_submodule(module)
    if submodule is not None:
        app = _named_app(submodule) or _any_app(submodule)
        if app is not None:
            return app
    return _any_app(module)


def find_app(spec: str | None) -> Celery:
    """Import the app as Celery does; the current directory is importable."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if not spec:
        return current_app()
    module_name, _, attr = spec.partition(":")
    if attr:
        obj = getattr(_import_module(module_name), attr, None)
        if not isinstance(obj, Celery):
            raise click.UsageError(f"{spec!r} is not a celeriac app")
        return obj
    try:
        module = _import_module(spec)
    except click.UsageError:
        parent, _, name = spec.rpartition(".")
        if not parent:
            raise
        obj = getattr(_import_module(parent), name, None)
        if isinstance(obj, Celery):
            return obj
        raise
    app = _app_in(module)
    if app is None:
        raise click.UsageError(f"module {spec!r} has no celeriac app (expected an attribute 'app')")
    return app


DEFAULT_CONFIG_MODULE = "celeryconfig"

_LOADERS = frozenset(
    {
        "app",
        "default",
        "celery.loaders.app:AppLoader",
        "celery.loaders.app.AppLoader",
        "celery.loaders.default:Loader",
        "celery.loaders.default.Loader",
    }
)
"""Celery's own loaders: what celeriac does anyway (settings from the app and from
``--config``/``celeryconfig``, task modules from ``imports`` and ``include``)."""


def check_loader(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Accept Celery's built-in loaders; refuse a custom one, which celeriac cannot run."""
    if value and value not in _LOADERS:
        raise click.BadParameter(
            f"{value!r}: custom loaders are not supported; celeriac reads settings from the "
            "app (config_from_object, --config) and task modules from imports/include",
            ctx,
            param,
        )
    return value


def change_directory(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--workdir``: change directory before the app is imported (Celery's order)."""
    if value:
        os.chdir(value)


def apply_config_module(app: Celery, module: str | None, default_app: bool) -> None:
    """Read ``--config`` (env ``CELERY_CONFIG_MODULE``) under the app's own settings, as
    Celery's loader does: what the app set itself wins. The default app (no ``-A``) also
    reads ``celeryconfig`` when it exists, as Celery's default loader does."""
    if not module and not default_app:
        return
    loaded = Settings()
    loaded.from_object(module or DEFAULT_CONFIG_MODULE, app.namespace, silent=not module)
    for key, value in loaded.without_defaults().items():
        if not app.conf.is_set(key):
            app.conf[key] = value
