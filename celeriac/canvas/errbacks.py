"""Error callbacks (``link_error``), in Celery 5's two calling conventions.

* An errback task whose function takes more than one positional argument (after
  its partial arguments) is *called* in the process that saw the failure, like a
  function: ``errback(request, exc, traceback)`` with the failed task's request
  context, the exception instance and the formatted traceback text. Celery 5 does
  the same. Sync errbacks run in a thread so the worker's event loop never blocks;
  what they raise is logged, not propagated.
* Any other errback (``def on_error(task_id)``), or one whose task is not registered
  in this process, is *published* as a task with the failed task's id prepended to
  its args (unless immutable), ``parent_id`` = the failed task. That is Celery's
  older form, which every worker understands.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from celeriac.context import Context

if TYPE_CHECKING:
    from celeriac.canvas.signature import Dispatch, Signature

__all__ = ["arun_errbacks", "run_errbacks_eagerly", "wants_request"]

logger = logging.getLogger("celeriac.canvas")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def wants_request(app: Any, sig: Signature) -> bool:
    """Whether ``sig`` is a new-style errback taking ``(request, exc, traceback)``."""
    task = app.tasks.get(sig.name)
    if task is None:
        return False
    fun = getattr(task, "__wrapped__", None)
    skip = 1 if fun is not None and task.bind else 0
    try:
        params = list(inspect.signature(fun if fun is not None else task.run).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    count = sum(1 for p in params if p.kind in _POSITIONAL) - skip
    if not sig.immutable:
        count -= len(sig.args)
    return count > 1


def _request_args(
    sig: Signature, request: Context, exc: BaseException, traceback: str | None
) -> list[Any]:
    return [request, exc, traceback, *sig.args]


async def _call_with_request(
    app: Any, sig: Signature, request: Context, exc: BaseException, traceback: str | None
) -> None:
    task = app.tasks[sig.name]
    args = _request_args(sig, request, exc, traceback)
    try:
        if task.is_async:
            await task(*args, **sig.kwargs)
        else:
            await asyncio.to_thread(task, *args, **sig.kwargs)
    except Exception:
        logger.exception("Errback %s raised for task %s", sig.name, request.id)


async def arun_errbacks(
    dispatch: Dispatch,
    errbacks: Iterable[Signature],
    request: Context,
    exc: BaseException,
    traceback: str | None,
) -> None:
    """Call new-style errbacks now; queue the others on ``dispatch`` (sent by the caller)."""
    app = dispatch.app
    for sig in errbacks:
        if wants_request(app, sig):
            await _call_with_request(app, sig, request, exc, traceback)
            continue
        options = {"parent_id": request.id, "root_id": request.root_id or request.id}
        try:
            sig._emit(dispatch, (request.id,), {}, options)
        except Exception:  # a bad errback must not hide the failure it reports
            logger.exception("Errback %s cannot be applied for task %s", sig.name, request.id)


def run_errbacks_eagerly(
    app: Any,
    errbacks: Iterable[Signature],
    request: Context,
    exc: BaseException,
    traceback: str | None,
) -> None:
    """Eager mode: call or apply each errback here and now."""
    for sig in errbacks:
        if not wants_request(app, sig):
            sig.apply((request.id,))
            continue
        try:
            value = app.tasks[sig.name](*_request_args(sig, request, exc, traceback), **sig.kwargs)
            if inspect.iscoroutine(value):
                app.run_sync(value)
        except Exception:
            logger.exception("Errback %s raised for task %s", sig.name, request.id)
