"""Run one task invocation and describe what happened, as a picklable Outcome.

The worker (in a pool child, a thread or on its event loop) and ``Task.apply``
both run tasks through here, so eager mode is not a separate code path.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import time
import traceback as tb
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celeriac import signals, states
from celeriac.context import Context, request_var
from celeriac.exceptions import Ignore, Reject, Retry
from celeriac.protocol.message import TaskMessage, decode_task, encode_task, format_time
from celeriac.protocol.results import exception_to_dict, make_meta
from celeriac.result import EagerResult

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = [
    "Outcome",
    "apply_eagerly",
    "arun_task",
    "context_for",
    "format_task_traceback",
    "retry_countdown",
    "run_task",
]


@dataclass
class Outcome:
    """The result of running a task body once."""

    state: str
    value: Any = None
    """Return value (SUCCESS), or the exception dict (FAILURE/RETRY)."""
    traceback: str | None = None
    runtime: float = 0.0
    exc_repr: str | None = None
    retry_eta: float | None = None
    """Epoch seconds at which a retry should run."""
    retry_args: list[Any] | None = None
    retry_kwargs: dict[str, Any] | None = None
    requeue: bool = False
    children: list[Any] | None = None
    """The results the task published while it ran (``as_tuple()`` forms; Celery's trail)."""
    exception: BaseException | None = field(default=None, repr=False)
    """The exception object itself; only kept in-process (dropped before pickling)."""

    def portable(self) -> Outcome:
        """A copy safe to pickle across processes (without the exception object)."""
        if self.exception is None:
            return self
        copy = Outcome(**{**self.__dict__, "exception": None})
        return copy


def retry_countdown(task: Task, retries: int) -> float:
    """Backoff for an autoretry: exponential when ``retry_backoff`` is set, with optional jitter."""
    backoff = task.retry_backoff
    if not backoff:
        return float(task.retry_kwargs.get("countdown", task.default_retry_delay))
    factor = 1.0 if backoff is True else float(backoff)
    countdown = float(min(task.retry_backoff_max, factor * (2**retries)))
    if task.retry_jitter:
        countdown = random.uniform(0, countdown)
    return countdown


def context_for(
    msg: TaskMessage,
    *,
    hostname: str | None,
    delivery_info: Mapping[str, Any] | None,
    is_eager: bool = False,
) -> Context:
    """Build ``self.request`` for one invocation."""
    return Context(
        id=msg.id,
        task=msg.task,
        args=msg.args,
        kwargs=msg.kwargs,
        retries=msg.retries,
        eta=format_time(msg.eta),
        expires=format_time(msg.expires),
        hostname=hostname,
        delivery_info=dict(delivery_info or {}),
        root_id=msg.root_id,
        parent_id=msg.parent_id,
        group=msg.group,
        group_index=msg.group_index,
        chord=msg.chord,
        chain=msg.chain,
        callbacks=msg.callbacks,
        errbacks=msg.errbacks,
        reply_to=msg.reply_to,
        correlation_id=msg.id,
        origin=msg.origin,
        headers=msg.headers,
        timelimit=(msg.time_limit, msg.soft_time_limit),
        ignore_result=msg.ignore_result,
        is_eager=is_eager,
        called_directly=False,
        priority=msg.priority,
        stamps=msg.stamps,
        stamped_headers=list(msg.stamps) or None,
        **{k: v for k, v in msg.headers.items() if k.isidentifier() and not hasattr(Context, k)},
    )


def _autoretry(task: Task, exc: BaseException, ctx: Context) -> Retry | None:
    """If ``exc`` is in ``autoretry_for``, ask for a retry (re-raise when retries are used up)."""
    if not task.autoretry_for or not isinstance(exc, task.autoretry_for):
        return None
    if task.dont_autoretry_for and isinstance(exc, task.dont_autoretry_for):
        return None
    options = dict(task.retry_kwargs)
    options.setdefault("countdown", retry_countdown(task, ctx.retries))
    try:
        task.retry(exc=exc, **options)
    except Retry as retry:
        return retry
    return None  # pragma: no cover - retry() always raises with throw=True


def _retry_outcome(task: Task, retry: Retry, ctx: Context, started: float) -> Outcome:
    cause = retry.exc if retry.exc is not None else retry
    when = retry.when if retry.when is not None else 0.0
    eta: dt.datetime | None = getattr(retry, "eta", None)
    retry_eta = eta.timestamp() if eta is not None else time.time() + float(when)
    task.on_retry(cause, ctx.id or "", ctx.args, ctx.kwargs, None)
    signals.task_retry.send(sender=task, request=ctx, reason=cause, einfo=None)
    return Outcome(
        state=states.RETRY,
        value=exception_to_dict(cause),
        traceback=format_task_traceback(cause),
        runtime=time.perf_counter() - started,
        exc_repr=repr(cause),
        retry_eta=retry_eta,
        retry_args=getattr(retry, "retry_args", None),
        retry_kwargs=getattr(retry, "retry_kwargs", None),
        exception=cause,
    )


_INTERNAL_FILES = {__file__, os.path.join(os.path.dirname(__file__), "task.py")}


def format_task_traceback(exc: BaseException) -> str:
    """The traceback from the task body down, without celeriac's own calling frames."""
    frames = exc.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename in _INTERNAL_FILES:
        frames = frames.tb_next
    return "".join(tb.format_exception(type(exc), exc, frames or exc.__traceback__))


def _failure_outcome(task: Task, exc: BaseException, ctx: Context, started: float) -> Outcome:
    text = format_task_traceback(exc)
    task.on_failure(exc, ctx.id or "", ctx.args, ctx.kwargs, text)
    signals.task_failure.send(
        sender=task,
        task_id=ctx.id,
        exception=exc,
        args=ctx.args,
        kwargs=ctx.kwargs,
        traceback=text,
        einfo=text,
    )
    return _failed(exc, text, started)


def _failed(exc: BaseException, text: str, started: float) -> Outcome:
    return Outcome(
        state=states.FAILURE,
        value=exception_to_dict(exc),
        traceback=text,
        runtime=time.perf_counter() - started,
        exc_repr=repr(exc),
        exception=exc,
    )


def _handle_exception(task: Task, exc: BaseException, ctx: Context, started: float) -> Outcome:
    if isinstance(exc, Retry):
        return _retry_outcome(task, exc, ctx, started)
    if isinstance(exc, Ignore):
        return Outcome(state=states.IGNORED, runtime=time.perf_counter() - started)
    if isinstance(exc, Reject):
        return Outcome(
            state=states.REJECTED,
            requeue=exc.requeue,
            exc_repr=repr(exc.reason),
            runtime=time.perf_counter() - started,
        )
    try:
        retry = _autoretry(task, exc, ctx)
    except BaseException as final:  # retries used up: the task fails with this
        return _failure_outcome(task, final, ctx, started)
    if retry is not None:
        return _retry_outcome(task, retry, ctx, started)
    return _failure_outcome(task, exc, ctx, started)


def _success(task: Task, value: Any, ctx: Context, started: float) -> Outcome:
    runtime = time.perf_counter() - started
    task.on_success(value, ctx.id or "", ctx.args, ctx.kwargs)
    signals.task_success.send(sender=task, result=value, runtime=runtime)
    return Outcome(state=states.SUCCESS, value=value, runtime=runtime)


def _internal_error(task: Task, ctx: Context, exc: Exception, started: float) -> Outcome:
    """An error outside the task body (``after_return``, a ``task_postrun`` wrapper...):
    Celery's ``task_internal_error`` is sent and the task fails with it."""
    text = format_task_traceback(exc)
    signals.task_internal_error.send(
        sender=task,
        task_id=ctx.id,
        args=ctx.args,
        kwargs=ctx.kwargs,
        request=ctx,
        exception=exc,
        traceback=exc.__traceback__,
        einfo=text,
    )
    return _failed(exc, text, started)


def _finish(task: Task, outcome: Outcome, ctx: Context) -> Outcome:
    trail = ctx.__dict__.get("children")
    if trail and task.trail:
        outcome.children = [result.as_tuple() for result in trail]
    try:
        task.after_return(
            outcome.state, outcome.value, ctx.id or "", ctx.args, ctx.kwargs, outcome.traceback
        )
    finally:
        signals.task_postrun.send(
            sender=task,
            task_id=ctx.id,
            task=task,
            args=ctx.args,
            kwargs=ctx.kwargs,
            retval=outcome.value,
            state=outcome.state,
        )
    return outcome


def run_task(task: Task, ctx: Context) -> Outcome:
    """Run a sync task body with ``ctx`` as its request; never raises for task errors."""
    token = request_var.set(ctx)
    started = time.perf_counter()
    try:
        signals.task_prerun.send(
            sender=task, task_id=ctx.id, task=task, args=ctx.args, kwargs=ctx.kwargs
        )
        task.before_start(ctx.id or "", ctx.args, ctx.kwargs)
        value = task.run(*ctx.args, **ctx.kwargs)
        outcome = _success(task, value, ctx, started)
    except Exception as exc:
        outcome = _handle_exception(task, exc, ctx, started)
    finally:
        request_var.reset(token)
    try:
        return _finish(task, outcome, ctx)
    except Exception as exc:
        return _internal_error(task, ctx, exc, started)


async def arun_task(task: Task, ctx: Context) -> Outcome:
    """Run an ``async def`` task body with ``ctx`` as its request."""
    token = request_var.set(ctx)
    started = time.perf_counter()
    try:
        signals.task_prerun.send(
            sender=task, task_id=ctx.id, task=task, args=ctx.args, kwargs=ctx.kwargs
        )
        task.before_start(ctx.id or "", ctx.args, ctx.kwargs)
        value = await task.run(*ctx.args, **ctx.kwargs)
        outcome = _success(task, value, ctx, started)
    except Exception as exc:
        outcome = _handle_exception(task, exc, ctx, started)
    finally:
        request_var.reset(token)
    try:
        return _finish(task, outcome, ctx)
    except Exception as exc:
        return _internal_error(task, ctx, exc, started)


def _run_anywhere(task: Task, ctx: Context) -> Outcome:
    if not task.is_async:
        return run_task(task, ctx)
    return task.app.run_sync(arun_task(task, ctx))  # type: ignore[no-any-return]


def apply_eagerly(
    task: Task,
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> EagerResult:
    """``Task.apply``: serialize like a publish, decode like a worker, run here."""
    app = task.app
    options = {k: v for k, v in options.items() if k not in {"countdown", "eta"}}
    request = app.build_request(task.name, args, kwargs, options, task)
    accept = set(app.conf["accept_content"]) | {request.serializer}
    while True:
        envelope = encode_task(request.message, request.serializer, request.compression)
        msg = decode_task(envelope, accept)
        ctx = context_for(msg, hostname="eager", delivery_info={"is_eager": True}, is_eager=True)
        outcome = _run_anywhere(task, ctx)
        if outcome.state != states.RETRY:
            break
        request.message.retries += 1
        if outcome.retry_args is not None:
            request.message.args = outcome.retry_args
        if outcome.retry_kwargs is not None:
            request.message.kwargs = outcome.retry_kwargs
    if _stores_eager_result(task) and not msg.ignore_result:
        _store_eager(task, msg.id, outcome)
    propagate = app.conf["task_eager_propagates"]
    return EagerResult(msg.id, outcome, app=app, propagate=propagate, name=task.name)


def _stores_eager_result(task: Task) -> bool:
    """``task_store_eager_result``: the task's own ``store_eager_result``, else the setting."""
    own = getattr(task, "store_eager_result", None)
    return bool(task.app.conf["task_store_eager_result"] if own is None else own)


def _store_eager(task: Task, task_id: str, outcome: Outcome) -> None:
    """Write an eager run's result to the backend, as a worker would."""
    meta = make_meta(task_id, outcome.state, outcome.value, traceback=outcome.traceback)

    async def store() -> None:
        backend = await task.app.aget_backend()
        await backend.store([(task_id, meta)])

    task.app.run_sync(store())
