"""Lazy objects, under the names of Celery's ``celery.local``.

``Proxy(fn)`` forwards every use to the object ``fn()`` returns at that moment (so
``current_task`` follows the task running now); ``PromiseProxy`` calls ``fn`` once, on
first use, and keeps the object.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

__all__ = ["PromiseProxy", "Proxy", "maybe_evaluate", "try_import"]


def try_import(module: str, default: Any = None) -> ModuleType | Any:
    """Import ``module``, or return ``default`` when it cannot be imported."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return default


class Proxy:
    """Forwards attribute access, calls, comparisons and containers to ``local()``."""

    __slots__ = ("__args", "__kwargs", "__local", "__name__")

    def __init__(
        self,
        local: Callable[..., Any],
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> None:
        object.__setattr__(self, "_Proxy__local", local)
        object.__setattr__(self, "_Proxy__args", args or ())
        object.__setattr__(self, "_Proxy__kwargs", kwargs or {})
        object.__setattr__(self, "__name__", name or getattr(local, "__name__", "proxy"))

    def _get_current_object(self) -> Any:
        """The object this proxy stands for now."""
        return self.__local(*self.__args, **self.__kwargs)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the object's class, as in Celery
        return type(self._get_current_object())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get_current_object(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._get_current_object(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._get_current_object(), name)

    def __dir__(self) -> list[str]:
        return dir(self._get_current_object())

    def __repr__(self) -> str:
        return repr(self._get_current_object())

    def __str__(self) -> str:
        return str(self._get_current_object())

    def __bool__(self) -> bool:
        return bool(self._get_current_object())

    def __eq__(self, other: object) -> bool:
        return bool(self._get_current_object() == other)

    def __ne__(self, other: object) -> bool:
        return bool(self._get_current_object() != other)

    def __hash__(self) -> int:
        return hash(self._get_current_object())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._get_current_object()(*args, **kwargs)

    def __len__(self) -> int:
        return len(self._get_current_object())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._get_current_object())

    def __contains__(self, item: object) -> bool:
        return item in self._get_current_object()

    def __getitem__(self, key: Any) -> Any:
        return self._get_current_object()[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._get_current_object()[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._get_current_object()[key]


class PromiseProxy(Proxy):
    """A proxy that evaluates ``local()`` once, on first use, and keeps the result."""

    __slots__ = ("__thing",)

    def _get_current_object(self) -> Any:
        try:
            return object.__getattribute__(self, "_PromiseProxy__thing")
        except AttributeError:
            return self.__evaluate__()

    def __evaluated__(self) -> bool:
        try:
            object.__getattribute__(self, "_PromiseProxy__thing")
        except AttributeError:
            return False
        return True

    def __evaluate__(self) -> Any:
        thing = super()._get_current_object()
        object.__setattr__(self, "_PromiseProxy__thing", thing)
        return thing

    def __maybe_evaluate__(self) -> Any:
        return self._get_current_object()


def maybe_evaluate(obj: Any) -> Any:
    """The object behind a :class:`PromiseProxy` (evaluated now), else ``obj`` itself."""
    if isinstance(obj, PromiseProxy):
        return obj.__maybe_evaluate__()
    return obj
