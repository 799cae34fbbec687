"""``celeriac shell``: a Python shell with the app, the canvas and the tasks at hand.

As Celery's: ``app`` and ``celery`` (the app), ``Task``, ``chord``, ``group``, ``chain``,
``chunks``, ``xmap``, ``xstarmap``, ``subtask``, ``signature``, and every task of the app
under its function's name (not with ``--without-tasks``). IPython is used when installed,
else bpython, else Python's own console; ``--ipython``, ``--bpython`` and ``--python``
choose one.
"""

from __future__ import annotations

import code
import contextlib
import importlib
from typing import Any

import click

import celeriac

__all__ = ["shell", "shell_namespace"]


def shell_namespace(app: Any, with_tasks: bool = True) -> dict[str, Any]:
    """The names the shell starts with."""
    namespace: dict[str, Any] = {
        "app": app,
        "celery": app,
        "Task": celeriac.Task,
        "chord": celeriac.chord,
        "group": celeriac.group,
        "chain": celeriac.chain,
        "chunks": celeriac.chunks,
        "xmap": celeriac.xmap,
        "xstarmap": celeriac.xstarmap,
        "subtask": celeriac.signature,
        "signature": celeriac.signature,
    }
    if with_tasks:
        for task in app.tasks.values():
            if not task.name.startswith("celery."):
                name = getattr(task, "__name__", None) or task.name.rsplit(".", 1)[-1]
                namespace[name] = task
    return namespace


def _ipython(namespace: dict[str, Any]) -> None:
    module = importlib.import_module("IPython")
    module.start_ipython(argv=[], user_ns=namespace)


def _bpython(namespace: dict[str, Any]) -> None:
    module = importlib.import_module("bpython")
    module.embed(namespace)


def _python(namespace: dict[str, Any]) -> None:
    with contextlib.suppress(ImportError):  # line editing and history, where available
        importlib.import_module("readline")
    code.interact(local=namespace, banner=f"celeriac {celeriac.__version__} shell")


@click.command()
@click.option("-I", "--ipython", is_flag=True, help="Force IPython.")
@click.option("-B", "--bpython", is_flag=True, help="Force bpython.")
@click.option("--python", is_flag=True, help="Force Python's own console.")
@click.option("-T", "--without-tasks", is_flag=True, help="Do not add the tasks to the shell.")
@click.option("--eventlet", is_flag=True, help="Not supported: celeriac has no eventlet pool.")
@click.option("--gevent", is_flag=True, help="Not supported: celeriac has no gevent pool.")
@click.pass_obj
def shell(
    obj: Any,
    /,
    ipython: bool,
    bpython: bool,
    python: bool,
    without_tasks: bool,
    eventlet: bool,
    gevent: bool,
) -> None:
    """Start a Python shell with the app, the canvas primitives and the tasks."""
    if eventlet or gevent:
        raise click.UsageError(
            "--eventlet/--gevent: celeriac does not monkey-patch; use async def tasks"
        )
    app = obj.app
    app.import_default_modules()
    namespace = shell_namespace(app, with_tasks=not without_tasks)
    forced = [(ipython, "IPython", _ipython), (bpython, "bpython", _bpython)]
    for wanted, label, run in forced:
        if wanted:
            try:
                run(namespace)
            except ImportError:
                raise click.ClickException(f"{label} is not installed") from None
            return
    if python:
        _python(namespace)
        return
    for run in (_ipython, _bpython):
        try:
            run(namespace)
            return
        except ImportError:
            continue
    _python(namespace)
