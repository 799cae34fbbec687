"""Find the app named by ``-A``: ``module``, ``module:attribute`` or ``module.attribute``."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from celeriac.app import Celery, current_app

__all__ = ["find_app"]


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise click.UsageError(f"cannot import app module {name!r}: {exc}") from exc
        raise


def _app_in(module: Any) -> Celery | None:
    for attr in ("app", "celery"):
        found = getattr(module, attr, None)
        if isinstance(found, Celery):
            return found
    for value in vars(module).values():
        if isinstance(value, Celery):
            return value
    return None


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
        celery_module = getattr(module, "celery", None)
        if celery_module is not None and not isinstance(celery_module, Celery):
            app = _app_in(celery_module)
    if app is None:
        raise click.UsageError(f"module {spec!r} has no celeriac app (expected an attribute 'app')")
    return app
