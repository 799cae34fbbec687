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
    "add_children",
    "capture_run_contexts",
    "current_request",
    "note_run_context",
    "request_var",
    "reset_run_contexts",
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
    shadow: str | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    message_properties: dict[str, Any] | None = None
    """The message's AMQP-style properties as received (see :attr:`properties`)."""
    stamps: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    """The canvas stamps of this task (``celeriac.canvas.stamping``)."""
    stamped_headers: list[str] | None = None
    replaced_task_nesting: int = 0
    task_object: Any = None
    """The Task instance running with this request (``current_task``); set by the run."""

    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)
        if fields:
            self.called_directly = fields.get("called_directly", False)

    @property
    def properties(self) -> dict[str, Any]:
        """The message's properties (``correlation_id``, ``reply_to``, ``priority``, ...)
        with its ``delivery_info``, as Celery's ``request.properties`` (built on use)."""
        props = dict(self.message_properties or {"correlation_id": self.correlation_id})
        if self.reply_to:
            props.setdefault("reply_to", self.reply_to)
        if self.priority is not None:
            props.setdefault("priority", self.priority)
        props["delivery_info"] = self.delivery_info
        return props

    def get(self, key: str, default: Any = None) -> Any:
        """Attribute lookup with a default (Celery's ``request.get``); custom headers are
        found here under their own names, even ones that are not identifiers
        (``request.get('x-tenant')``)."""
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        """The fields set on this context (the message's, not the running task object)."""
        return {k: v for k, v in self.__dict__.items() if k != "task_object"}

    def __repr__(self) -> str:
        return f"<Context: {self.as_dict()!r}>"


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


def add_children(results: list[Any]) -> None:
    """:func:`add_child` of each of ``results``, all new (no check for ones already there)."""
    req = request_var.get()
    if req is not None and not req.called_directly and results:
        req.__dict__.setdefault("children", []).extend(results)


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


_run_contexts: contextvars.ContextVar[list[contextvars.Context] | None] = contextvars.ContextVar(
    "celeriac_run_contexts", default=None
)


def capture_run_contexts() -> tuple[list[contextvars.Context], contextvars.Token[Any]]:
    """Start noting the context in which an ``async def`` body is called (see
    :func:`note_run_context`); reset ``_run_contexts`` with the token afterwards."""
    holder: list[contextvars.Context] = []
    return holder, _run_contexts.set(holder)


def reset_run_contexts(token: contextvars.Token[Any]) -> None:
    """Stop noting contexts (the token from :func:`capture_run_contexts`)."""
    _run_contexts.reset(token)


def note_run_context() -> None:
    """Called as an ``async def`` body's coroutine is made: keep a copy of the context
    then, so that a base class's sync ``__call__`` (``with app.app_context(): return
    self.run()``) also holds while the coroutine runs."""
    holder = _run_contexts.get()
    if holder is not None:
        holder.append(contextvars.copy_context())
