"""Celery's built-in canvas tasks, registered on every app.

A Celery client's canvas may publish these by name, so a celeriac worker must know
them: ``celery.map``, ``celery.starmap`` (run a task's body over many argument
sets, in the worker, returning the list), ``celery.chunks`` (apply a group of
``celery.starmap`` parts; its result is that group's result tuple) and
``celery.accumulate`` (returns its arguments; see ``celeriac.canvas.replace``).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import _state
from celeriac.canvas.mapping import chunks

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = ["register_builtins"]


def _run(self: Task, task: Mapping[str, Any], args: Sequence[Any]) -> Any:
    """Call the body of ``task`` (a signature dict) directly; its partial args are ignored."""
    value = self.app.get_task(str(task["task"]))(*args)
    if inspect.iscoroutine(value):
        return self.app.run_sync(value)
    return value


def _map(self: Task, task: Mapping[str, Any], it: Iterable[Any]) -> list[Any]:
    """``celery.map``: the task's body called with each item."""
    return [_run(self, task, (item,)) for item in it]


def _starmap(self: Task, task: Mapping[str, Any], it: Iterable[Sequence[Any]]) -> list[Any]:
    """``celery.starmap``: the task's body called with ``*item`` for each item."""
    return [_run(self, task, tuple(item)) for item in it]


def _chunks(self: Task, task: Mapping[str, Any], it: Iterable[Any], n: int) -> Any:
    """``celery.chunks``: apply the group of starmap parts; return its result tuple."""
    return chunks(task, it, n, app=self.app).apply_async().as_tuple()


def _accumulate(self: Task, *args: Any, **kwargs: Any) -> Any:
    """``celery.accumulate``: its arguments (or the one at ``index``); the body that
    ``Task.replace`` gives a group."""
    index = kwargs.get("index")
    return args[index] if index is not None else args


_BUILTINS = {
    "celery.map": _map,
    "celery.starmap": _starmap,
    "celery.chunks": _chunks,
    "celery.accumulate": _accumulate,
}


def register_builtins(app: Any) -> None:
    """Register ``celery.map``, ``celery.starmap``, ``celery.chunks`` and
    ``celery.accumulate`` on ``app``."""
    for name, fun in _BUILTINS.items():
        app.task(name=name, bind=True, shared=False, lazy=False)(fun)


# Every app created from now on gets them, like @shared_task tasks.
if register_builtins not in _state.shared_task_constructors():
    _state.shared_task_constructors().append(register_builtins)
