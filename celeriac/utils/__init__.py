"""Small helpers under the names Celery's ``celery.utils`` gives them.

Celery keeps these for compatibility; so does celeriac, so that code importing them
from ``celery.utils`` keeps working after the import swap.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from typing import Any

from celeriac.conf.settings import load_object
from celeriac.protocol.ids import uuid4
from celeriac.utils.einfo import ExceptionInfo
from celeriac.utils.log import LOG_LEVELS

__all__ = [
    "LOG_LEVELS",
    "ExceptionInfo",
    "cached_property",
    "chunks",
    "gen_task_name",
    "gen_unique_id",
    "get_cls_by_name",
    "get_full_cls_name",
    "import_from_cwd",
    "instantiate",
    "memoize",
    "nodename",
    "nodesplit",
    "noop",
    "uuid",
]


def uuid() -> str:
    """A new random id, as task ids are made."""
    return uuid4()


gen_unique_id = uuid


def noop(*args: Any, **kwargs: Any) -> None:
    """Do nothing, whatever the arguments."""


def chunks(it: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """Split ``it`` into lists of ``n`` items (the last one may be shorter)."""
    iterator = iter(it)
    while batch := [item for _, item in zip(range(n), iterator, strict=False)]:
        yield batch


def memoize(
    maxsize: int | None = None, keyfun: Callable[..., Any] | None = None, Cache: Any = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a function's results by its arguments (``keyfun`` makes the key)."""

    def decorate(fun: Callable[..., Any]) -> Callable[..., Any]:
        if keyfun is None:
            return functools.lru_cache(maxsize=maxsize)(fun)
        cache: dict[Any, Any] = {}

        @functools.wraps(fun)
        def cached(*args: Any, **kwargs: Any) -> Any:
            key = keyfun(args, kwargs)
            if key not in cache:
                if maxsize is not None and len(cache) >= maxsize:
                    cache.pop(next(iter(cache)))
                cache[key] = fun(*args, **kwargs)
            return cache[key]

        return cached

    return decorate


def gen_task_name(app: Any, name: str, module_name: str | None) -> str:
    """A task's name from its module and function name (``module.name``); a task of the
    ``__main__`` module is named after the app's ``main``."""
    module_name = module_name or "__main__"
    module = sys.modules.get(module_name)
    if module is not None:
        module_name = module.__name__
    if module_name == "__main__" and getattr(app, "main", None):
        return f"{app.main}.{name}"
    return ".".join(part for part in (module_name, name) if part)


def get_cls_by_name(name: Any, aliases: dict[str, str] | None = None, **_: Any) -> Any:
    """The object an import path names (``'pkg.mod:Class'`` or ``'pkg.mod.Class'``)."""
    if not isinstance(name, str):
        return name  # already an object
    return load_object((aliases or {}).get(name, name))


def get_full_cls_name(obj: Any) -> str:
    """``module.QualName`` of a class (or of an object's class)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def instantiate(name: Any, *args: Any, **kwargs: Any) -> Any:
    """Create an instance of the class an import path names."""
    return get_cls_by_name(name)(*args, **kwargs)


def import_from_cwd(module: str, imp: Callable[..., Any] | None = None, package: Any = None) -> Any:
    """Import ``module`` with the current directory first on ``sys.path``."""
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return (imp or importlib.import_module)(module, package=package)
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def nodename(name: str, hostname: str) -> str:
    """A worker's node name: ``name@hostname``."""
    return f"{name}@{hostname}"


def nodesplit(name: str) -> tuple[str | None, str]:
    """Split a node name into ``(name, hostname)``; ``(None, hostname)`` without ``@``."""
    head, sep, tail = name.partition("@")
    return (head, tail) if sep else (None, head)
