"""The request context of the task being executed (``self.request``)."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")

__all__ = [
    "Context",
    "StateSink",
    "add_child",
    "current_request",
    "request_var",
    "set_state_sink",
    "state_sink",
]


class Context:
    """What the worker knows about the current invocation; attributes as in Celery."""

    id: str | None = None
    task: str | None = None
    args: list[Any] | tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    retries: int = 0
    eta: str | None = None
    expires: str | None = None
    hostname: str | None = None
    delivery_info: dict[str, Any] = {}  # noqa: RUF012
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    chord: dict[str, Any] | None = None
    chain: list[dict[str, Any]] | None = None
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    reply_to: str | None = None
    correlation_id: str | None = None
    origin: str | None = None
    headers: dict[str, Any] | None = None
    timelimit: tuple[float | None, float | None] = (None, None)
    ignore_result: bool = False
    is_eager: bool = False
    called_directly: bool = True
    priority: int | None = None
    stamps: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    """The canvas stamps of this task (``celeriac.canvas.stamping``)."""
    stamped_headers: list[str] | None = None

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        if fields:
            self.called_directly = fields.get("called_directly", False)

    def get(self, key: str, default: Any = None) -> Any:
        """Attribute lookup with a default (Celery's ``request.get``)."""
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        """The fields set on this context."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"<Context: {self.__dict__!r}>"


request_var: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "celeriac_request", default=None
)


def current_request() -> Context | None:
    """The context of the task running in this thread/coroutine, if any."""
    return request_var.get()


def add_child(result: R) -> R:
    """Record ``result`` as a child of the task running here (Celery's trail: the results
    a task publishes become its result's ``children``); returns ``result``."""
    req = request_var.get()
    if req is not None and not req.called_directly:
        trail = req.__dict__.setdefault("children", [])
        if result not in trail:
            trail.append(result)
    return result


StateSink = Callable[[str, dict[str, Any]], None]
_state_sink: StateSink | None = None


def set_state_sink(sink: StateSink | None) -> None:
    """Let a worker receive ``update_state`` documents of tasks running in its own process.

    Going through the worker keeps them ordered after its STARTED write: pool threads
    and ``async def`` tasks call the worker's sink; pool processes install one that
    sends the document to the worker over their pipe.
    """
    global _state_sink
    _state_sink = sink


def state_sink() -> StateSink | None:
    """The worker's sink for this process, if any."""
    return _state_sink
