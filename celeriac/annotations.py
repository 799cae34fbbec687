"""``task_annotations``: task attributes set from the configuration, as Celery sets them.

The setting is a mapping of task names (or ``'*'`` for every task) to attributes, an
object with ``annotate(task)`` (and optionally ``annotate_any()``) returning a mapping or
None, an import path of such an object's class, or a list of these. For each task the
first entry that names it and the first that gives ``'*'`` apply, in that order, so
``'*'`` wins where both set an attribute (Celery's order). A plain function becomes a
method (``{'on_failure': handler}`` receives the task as ``self``); a key starting with
``@`` wraps the method it names: ``{'@run': wrapper}`` makes the method
``wrapper(original_function)``.

Annotations are applied once per task, when the app is finalized (worker and beat start)
or before its first publish, and to tasks registered after that as they are registered.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from celeriac.conf.settings import load_object

__all__ = ["annotate", "prepare_annotations", "resolve"]

_DONE = "_celeriac_annotated"
_OWN_CLASS = "_celeriac_own_class"


class _ByName:
    """A mapping annotation: attributes by task name, and ``'*'`` for every task."""

    def __init__(self, mapping: Mapping[str, Any]) -> None:
        self._mapping = mapping

    def annotate(self, task: Any) -> dict[str, Any] | None:
        found = self._mapping.get(task.name)
        return None if found is None else dict(found)

    def annotate_any(self) -> dict[str, Any] | None:
        found = self._mapping.get("*")
        return None if found is None else dict(found)


def _expand(entry: Any) -> Any:
    if isinstance(entry, Mapping):
        return _ByName(entry)
    if isinstance(entry, str):
        found = load_object(entry)
        return found() if inspect.isclass(found) else found
    return entry


def prepare_annotations(setting: Any) -> list[Any]:
    """The ``task_annotations`` setting as a list of objects with ``annotate``."""
    if setting is None:
        return []
    entries = setting if isinstance(setting, list | tuple) else [setting]
    return [_expand(entry) for entry in entries]


def _first(annotations: Iterable[Any], method: str, *args: Any) -> Any:
    for annotation in annotations:
        call: Callable[..., Any] | None = getattr(annotation, method, None)
        if call is not None:
            found = call(*args)
            if found is not None:
                return found
    return None


def resolve(annotations: list[Any], task: Any) -> list[Mapping[str, Any]]:
    """The attribute mappings that apply to ``task``: its own first, then ``'*'``."""
    found = (_first(annotations, "annotate", task), _first(annotations, "annotate_any"))
    return [mapping for mapping in found if mapping]


def _own_class(task: Any) -> type:
    """The task's class, made its own subclass first (so wrapping a method, even
    ``__call__``, changes this task only)."""
    cls = type(task)
    if cls.__dict__.get(_OWN_CLASS) != task.name:
        cls = type(cls.__name__, (cls,), {_OWN_CLASS: task.name, "__module__": cls.__module__})
        task.__class__ = cls
    return cls


def _wrap(task: Any, name: str, around: Callable[[Any], Any]) -> None:
    cls = _own_class(task)
    original = getattr(cls, name)
    original = getattr(original, "__wrapped__", None) or original
    method = around(original)
    method.__wrapped__ = original
    setattr(cls, name, method)
    vars(task).pop(name, None)  # an instance attribute would hide the wrapped method


def _set(task: Any, key: str, value: Any) -> None:
    if key.startswith("@"):
        _wrap(task, key[1:], value)
    elif isinstance(value, types.FunctionType):
        setattr(task, key, types.MethodType(value, task))
    else:
        setattr(task, key, value)


def annotate(task: Any, annotations: list[Any]) -> None:
    """Apply ``annotations`` (from :func:`prepare_annotations`) to ``task``, once."""
    if vars(task).get(_DONE):
        return
    for mapping in resolve(annotations, task):
        for key, value in mapping.items():
            _set(task, key, value)
    setattr(task, _DONE, True)
