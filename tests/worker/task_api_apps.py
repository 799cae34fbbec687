"""Tasks for the Task API worker tests, on the worker tests' app (forked children see them)."""

from __future__ import annotations

import contextvars
from typing import Any

from celeriac.exceptions import Reject
from celeriac.utils.einfo import ExceptionInfo
from tests.worker.apps import app

inside: contextvars.ContextVar[str | None] = contextvars.ContextVar("inside", default=None)
seen: list[tuple[str, Any]] = []
"""What handlers saw, in this process (threads pool and async tasks only)."""


class ContextTask(app.Task):  # type: ignore[misc, name-defined]
    """Flask's recipe: every run happens inside a context the base class opens."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = inside.set(f"context of {self.name}")
        try:
            return super().__call__(*args, **kwargs)
        finally:
            inside.reset(token)


@app.task(base=ContextTask, name="ta.in_context")
def in_context() -> str | None:
    return inside.get()


@app.task(base=ContextTask, name="ta.async_in_context")
async def async_in_context() -> str | None:
    return inside.get()


@app.task(name="ta.plain")
def plain() -> str | None:
    return inside.get()


@app.task(name="ta.reject")
def reject() -> None:
    raise Reject("bad input", requeue=False)


@app.task(bind=True, name="ta.request_fields")
def request_fields(self: Any) -> dict[str, Any]:
    req = self.request
    return {
        "shadow": req.shadow,
        "argsrepr": req.argsrepr,
        "kwargsrepr": req.kwargsrepr,
        "custom": req.get("x-custom"),
        "correlation_id": req.properties.get("correlation_id"),
        "routing_key": req.properties["delivery_info"].get("routing_key"),
        "stamps": req.stamps,
    }


def _on_failure(self: Any, exc: BaseException, task_id: str, *_: Any) -> None:
    einfo = _[-1]
    ok = isinstance(einfo, ExceptionInfo) and einfo.exception is exc
    seen.append(("on_failure", (self.name, ok, "ValueError: broken" in str(einfo))))


@app.task(name="ta.failing", on_failure=_on_failure, my_flag=7)
def failing() -> None:
    raise ValueError("broken")


class Recording(app.Task):  # type: ignore[misc, name-defined]
    def after_return(self, status: str, retval: Any, *args: Any) -> None:
        seen.append(("after_return", status))


@app.task(bind=True, base=Recording, name="ta.retry_once", default_retry_delay=0.05)
def retry_once(self: Any) -> int:
    if self.request.retries == 0:
        raise self.retry()
    return int(self.request.retries)
