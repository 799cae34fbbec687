"""One small Celery project, run unchanged on Celery and on celeriac but for the import.

:func:`run` returns what a user can observe, as plain data, so that the parity test
can compare the two. Tasks run eagerly (``apply()``), through each library's real
execution path for a single task.
"""

from __future__ import annotations

import contextvars
import importlib
import logging
from typing import Any

__all__ = ["run"]


def _import(flavor: str, path: str) -> Any:
    return importlib.import_module(path.replace("celery", flavor, 1))


def run(flavor: str) -> dict[str, Any]:
    """Run the project on ``flavor`` (``'celery'`` or ``'celeriac'``); what it observed."""
    lib = _import(flavor, "celery")
    exceptions = _import(flavor, "celery.exceptions")
    log = _import(flavor, "celery.utils.log")
    app = lib.Celery("parity", broker="memory://", set_as_current=False)
    app.conf.task_store_eager_result = False
    seen: dict[str, Any] = {"events": []}
    events: list[Any] = seen["events"]
    inside: contextvars.ContextVar[str | None] = contextvars.ContextVar("inside", default=None)

    tasks = _define_tasks(app, exceptions, events, inside)
    wrapped, failing, retry_once = tasks["wrapped"], tasks["failing"], tasks["retry_once"]
    limited, fields, reject, ContextTask = (
        tasks["limited"],
        tasks["fields"],
        tasks["reject"],
        tasks["ContextTask"],
    )
    task_logger = log.get_task_logger("proj.tasks")

    seen["wrapped"] = wrapped.apply().get()
    seen["direct_call"] = wrapped()
    failed = failing.apply()
    seen["failed"] = (failed.state, type(failed.result).__name__)
    seen["my_flag"] = failing.my_flag
    seen["is_subclass"] = isinstance(failing, ContextTask) and isinstance(failing, app.Task)
    seen["task_app"] = failing.app is app
    seen["max_retries_error"] = (
        retry_once.MaxRetriesExceededError is exceptions.MaxRetriesExceededError
    )
    seen["limited"] = limited.apply().get()
    seen["fields"] = fields.apply().get()
    seen["reject_state"] = reject.apply().state
    events.append("retry follows")
    retried = retry_once.apply()
    seen["retried_result"] = retried.get() if retried.state == "SUCCESS" else retried.state
    seen["retried_with_exc"] = tasks["retry_with_exc"].apply().state
    seen["task_logger_parent"] = task_logger.parent.name
    try:
        log.get_task_logger(f"{flavor}.task")
        seen["reserved"] = "accepted"
    except RuntimeError:
        seen["reserved"] = "RuntimeError"
    seen["logger_level"] = logging.getLevelName(task_logger.getEffectiveLevel()) is not None

    app.set_default()
    app.set_current()  # Celery: a current app set earlier (by any test) wins over the default
    seen["current_app"] = (lib.current_app.main, isinstance(lib.current_app, lib.Celery))
    conn = app.connection_for_write("amqp://user:secret@broker.example:5673/vhost")
    seen["connection"] = {
        "hostname": conn.hostname,
        "port": conn.port,
        "userid": conn.userid,
        "virtual_host": conn.virtual_host,
        "uri": conn.as_uri(),
    }
    return seen


def _define_tasks(
    app: Any, exceptions: Any, events: list[Any], inside: contextvars.ContextVar[str | None]
) -> dict[str, Any]:
    """The project's tasks: a Flask-style ContextTask base, handlers, retries, Reject."""

    ContextTask = _context_task(app, events, inside)

    @app.task(base=ContextTask, name="p.wrapped")
    def wrapped() -> str | None:
        return inside.get()

    def on_failure(
        self: Any, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        events.append(
            (
                "on_failure",
                self.name,
                einfo.type.__name__,
                isinstance(einfo.traceback, str) and "ValueError: broken" in einfo.traceback,
                "ValueError: broken" in str(einfo),
            )
        )

    @app.task(name="p.failing", base=ContextTask, on_failure=on_failure, my_flag=7)
    def failing() -> None:
        raise ValueError("broken")

    @app.task(bind=True, base=ContextTask, name="p.retry_once", default_retry_delay=0)
    def retry_once(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return int(self.request.retries)

    @app.task(bind=True, base=ContextTask, name="p.retry_with_exc", default_retry_delay=0)
    def retry_with_exc(self: Any) -> int:
        if self.request.retries == 0:
            raise self.retry(exc=KeyError("again"), countdown=0)
        return int(self.request.retries)

    @app.task(bind=True, name="p.limited", max_retries=0)
    def limited(self: Any) -> str:
        try:
            self.retry(countdown=0)
        except self.MaxRetriesExceededError:
            return "max retries exceeded"
        return "retried"

    @app.task(bind=True, name="p.fields")
    def fields(self: Any) -> dict[str, Any]:
        req = self.request
        return {
            "missing": req.get("x-missing", "default"),
            "is_eager": req.is_eager,
            "retries": req.retries,
            "called_directly": req.called_directly,
        }

    @app.task(name="p.reject")
    def reject() -> None:
        raise exceptions.Reject("bad input", requeue=False)

    return {
        "ContextTask": ContextTask,
        "wrapped": wrapped,
        "failing": failing,
        "retry_once": retry_once,
        "retry_with_exc": retry_with_exc,
        "limited": limited,
        "fields": fields,
        "reject": reject,
    }


def _context_task(
    app: Any, events: list[Any], inside: contextvars.ContextVar[str | None]
) -> type[Any]:
    """Flask's ContextTask recipe, with handlers that note what they are given."""

    class ContextTask(app.Task):  # type: ignore[misc, name-defined]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            token = inside.set("app context")
            try:
                return super().__call__(*args, **kwargs)
            finally:
                inside.reset(token)

        def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
            cause = type(exc).__name__ if exc is not None else None
            events.append(("on_retry", self.name, cause, einfo.type.__name__, bool(str(einfo))))

        def after_return(self, status: str, retval: Any, *args: Any) -> None:
            events.append(("after_return", self.name, status, type(retval).__name__))

    return ContextTask
