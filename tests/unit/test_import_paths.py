"""Every import path of Celery's public API exists under ``celeriac.``.

The names come from the installed ``celery`` package's ``__all__`` (so the list follows
Celery), minus the exceptions below, each with the reason celeriac does not offer it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import celeriac
from celeriac import exceptions
from celeriac.app.base import Celery
from celeriac.app.task import Context, Task
from celeriac.context import Context as RequestContext
from celeriac.utils.log import get_task_logger

# celery module -> (celeriac module, {name: reason it is not offered})
PATHS: dict[str, tuple[str, dict[str, str]]] = {
    "celery": (
        "celeriac",
        {
            "maybe_patch_concurrency": "no eventlet/gevent pools to monkey-patch for",
            "execute": "a Celery 3 compatibility module",
            "messaging": "a Celery 3 compatibility module",
            "registry": "a Celery 3 compatibility module",
            "log": "a Celery 3 compatibility module",
        },
    ),
    "celery.app": (
        "celeriac.app",
        {
            "AppPickler": "apps are not pickled: pool processes are forked with the app",
            "default_app": "one current app: celeriac.current_app",
            "enable_trace": "Celery's debugging of implicit app creation",
            "disable_trace": "Celery's debugging of implicit app creation",
            "push_current_task": "the running task is a contextvar, set by the worker",
            "pop_current_task": "the running task is a contextvar, set by the worker",
        },
    ),
    "celery.app.base": ("celeriac.app.base", {}),
    "celery.app.task": ("celeriac.app.task", {}),
    "celery.canvas": ("celeriac.canvas", {}),
    "celery.exceptions": (
        "celeriac.exceptions",
        {
            "WorkerShutdown": "raising it does not stop a celeriac worker",
            "WorkerTerminate": "raising it does not stop a celeriac worker",
            "CeleryCommandException": "celeriac's commands raise click's own exceptions",
        },
    ),
    "celery.local": ("celeriac.local", {}),
    "celery.result": (
        "celeriac.result",
        {
            "ResultBase": "added with the result API (issue 15, result part)",
        },
    ),
    "celery.schedules": ("celeriac.schedules", {}),
    "celery.states": ("celeriac.states", {}),
    "celery.utils": ("celeriac.utils", {"worker_direct": "no worker_direct queues yet"}),
    "celery.utils.log": ("celeriac.utils.log", {}),
}

# Paths whose names are checked elsewhere (by the tests of the part that adds them).
MODULE_ONLY = {"celery.signals": "celeriac.signals", "celery.bin.celery": "celeriac.bin.celery"}

# Paths other parts of the work add; checked here once they exist.
ADDED_ELSEWHERE = {
    "celery.app.control": "celeriac.app.control",
    "celery.contrib.abortable": "celeriac.contrib.abortable",
}


def _expected(celery_module: str, excluded: dict[str, str]) -> list[str]:
    names = importlib.import_module(celery_module).__all__
    return sorted(n for n in names if not n.startswith("_") and n not in excluded)


CASES = [
    (celery_module, ours, name)
    for celery_module, (ours, excluded) in PATHS.items()
    for name in _expected(celery_module, excluded)
]


@pytest.mark.parametrize(("celery_module", "ours", "name"), CASES)
def test_each_public_name_exists(celery_module: str, ours: str, name: str) -> None:
    module = importlib.import_module(ours)
    assert hasattr(module, name), f"from {ours} import {name} (Celery: {celery_module})"


@pytest.mark.parametrize("ours", sorted({ours for ours, _ in PATHS.values()}))
def test_each_module_declares_what_it_offers(ours: str) -> None:
    module = importlib.import_module(ours)
    celery_module = next(c for c, (o, _) in PATHS.items() if o == ours)
    offered = set(module.__all__)
    missing = set(_expected(celery_module, PATHS[celery_module][1])) - offered
    assert not missing, f"{ours}.__all__ lacks {sorted(missing)}"


def test_the_exclusions_name_real_celery_names() -> None:
    """An exclusion of a name Celery no longer has would hide nothing: drop it."""
    for celery_module, (_, excluded) in PATHS.items():
        stale = set(excluded) - set(importlib.import_module(celery_module).__all__)
        assert not stale, f"{celery_module}: {sorted(stale)}"


@pytest.mark.parametrize("ours", sorted(MODULE_ONLY.values()))
def test_module_only_paths_import(ours: str) -> None:
    assert importlib.import_module(ours)


@pytest.mark.parametrize(("celery_module", "ours"), sorted(ADDED_ELSEWHERE.items()))
def test_paths_added_elsewhere(celery_module: str, ours: str) -> None:
    try:
        module = importlib.import_module(ours)
    except ModuleNotFoundError:
        pytest.skip(f"{ours} is added by another part of issue 14/15")
    missing = _expected(celery_module, {}) and [
        n for n in _expected(celery_module, {}) if not hasattr(module, n)
    ]
    assert not missing, f"{ours} lacks {missing}"


def _celery_ancestors(cls: type) -> set[str]:
    """Names of the classes ``cls`` derives from that code can catch by name."""
    exported = set(importlib.import_module("celery.exceptions").__all__)
    names = set()
    for base in inspect.getmro(cls)[1:]:
        if base.__module__ == "builtins" and base is not object:
            names.add(f"builtins.{base.__name__}")
        elif base.__module__ == "celery.exceptions" and base.__name__ in exported:
            names.add(base.__name__)
    return names


def _our_ancestors(cls: type) -> set[str]:
    names = set()
    for base in inspect.getmro(cls)[1:]:
        if base.__module__ == "builtins":
            names.add(f"builtins.{base.__name__}")
        for name in exceptions.__all__:
            if getattr(exceptions, name) is base:
                names.add(name)
    return names


EXCEPTIONS = [
    name
    for name in _expected("celery.exceptions", PATHS["celery.exceptions"][1])
    if inspect.isclass(getattr(importlib.import_module("celery.exceptions"), name))
]


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_exceptions_are_caught_by_the_same_base_classes(name: str) -> None:
    """``except TaskPredicate`` / ``except KeyError`` ... catch the same exceptions."""
    theirs = getattr(importlib.import_module("celery.exceptions"), name)
    ours: Any = getattr(exceptions, name)
    missing = _celery_ancestors(theirs) - _our_ancestors(ours)
    assert not missing, f"celeriac.exceptions.{name} is not a subclass of {sorted(missing)}"


def test_the_common_paths_are_the_same_objects() -> None:
    assert Celery is celeriac.Celery and Task is celeriac.Task and Context is RequestContext
    assert celeriac.subtask is celeriac.signature
    assert get_task_logger("proj.tasks").parent is not None
