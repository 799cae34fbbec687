"""Tasks: the ``@app.task`` decorator, ``Task`` and publishing options.

A task is a function plus Celery's options. Calling it runs the function here;
``delay``/``apply_async`` publish a message for a worker; ``apply`` runs it in
this process through the same serialization and execution path a worker uses.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import inspect
import warnings
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Literal, Protocol, overload

from typing_extensions import ParamSpec, TypeVar

from celeriac import _state, clock
from celeriac._portal import sync_twin
from celeriac.canvas.mapping import chunks, xmap, xstarmap
from celeriac.canvas.replace import add_to_chord as _add_to_chord
from celeriac.canvas.replace import replace as _replace
from celeriac.canvas.signature import Signature
from celeriac.context import Context, add_child, current_request, note_run_context, state_sink
from celeriac.exceptions import MaxRetriesExceededError, Retry
from celeriac.fixups.django import on_commit
from celeriac.local import Proxy
from celeriac.protocol.results import make_meta
from celeriac.publishing import PUBLISH_OPTIONS, PublishRequest, build_message
from celeriac.trace import apply_eagerly

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.result import AsyncResult, EagerResult

__all__ = [
    "NO_EFFECT_OPTIONS",
    "PUBLISH_OPTIONS",
    "TASK_OPTIONS",
    "P",
    "PublishRequest",
    "R",
    "BoundTaskDecorator",
    "Task",
    "TaskDecorator",
    "build_message",
    "current_task",
    "get_current_task",
    "make_task_decorator",
    "shared_task",
]

# The decorator options Celery documents. Any other option becomes a task attribute, as in
# Celery (``@app.task(my_flag=1)``, ``@app.task(on_failure=fn)``); one close to a known
# name is probably a typo and gets a warning.
TASK_OPTIONS = frozenset(
    {
        "name", "bind", "base", "max_retries", "default_retry_delay", "autoretry_for",
        "dont_autoretry_for", "retry_kwargs", "retry_backoff", "retry_backoff_max",
        "retry_jitter", "acks_late", "acks_on_failure_or_timeout", "acks_on_failure",
        "acks_on_timeout", "reject_on_worker_lost",
        "ignore_result", "store_errors_even_if_ignored", "time_limit", "soft_time_limit",
        "rate_limit", "queue", "exchange", "routing_key", "priority", "serializer",
        "compression", "track_started", "expires", "typing", "throws", "shared", "trail",
        "send_events", "lazy", "pydantic",
    }
)  # fmt: skip


# The decorated function's parameters and return type, kept by ``@app.task`` so that mypy
# checks ``add.delay(...)`` and knows ``add.delay(...).get()``. The defaults make a bare
# ``Task`` mean "any parameters, any result", as it did before tasks were generic.
P = ParamSpec("P", default=...)
R = TypeVar("R", default=Any)
# The same, free (no default), for the decorators' signatures.
_P = ParamSpec("_P")
_R = TypeVar("_R")


class Task(Generic[P, R]):
    """A task type. ``@app.task`` creates one instance per decorated function.

    ``Task[P, R]`` is generic in the function's parameters ``P`` and return type ``R``:
    calling, ``delay`` and ``apply_async`` are typed from them (a bound task's ``self`` is
    left out) and the results are ``AsyncResult[R]``.
    """

    name: str = ""
    typing: bool = True
    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: Mapping[str, Any] = {}
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    acks_late: bool | None = None
    acks_on_failure_or_timeout: bool | None = None
    reject_on_worker_lost: bool | None = None
    ignore_result: bool | None = None
    store_errors_even_if_ignored: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    rate_limit: str | float | None = None
    queue: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    priority: int | None = None
    serializer: str | None = None
    compression: str | None = None
    track_started: bool | None = None
    expires: float | dt.datetime | None = None
    throws: tuple[type[BaseException], ...] = ()
    send_events: bool = True
    bind: bool = False
    trail: bool = True
    """Record the results this task publishes while it runs as its result's ``children``."""

    MaxRetriesExceededError = MaxRetriesExceededError
    """Raised by ``retry()`` when retries are used up (``except self.MaxRetriesExceededError``)."""

    _app: Celery | None = None
    _fun: Callable[..., Any] | None = None
    _async = False

    # identity ---------------------------------------------------------------------------
    @property
    def app(self) -> Celery:
        """The app this task belongs to (the current app for shared tasks)."""
        app: Celery = self._app if self._app is not None else _state.get_current_app()
        return app

    @property
    def is_async(self) -> bool:
        """Whether the body is an ``async def`` function."""
        return inspect.iscoroutinefunction(self._fun or self.run)

    @property
    def request(self) -> Context:
        """The context of the invocation running now (empty when called directly)."""
        return current_request() or Context()

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"

    # running ----------------------------------------------------------------------------
    def run(self, *args: Any, **kwargs: Any) -> Any:
        """The task body: the decorated function (receiving ``self`` first when bound)."""
        if self._fun is None:
            raise NotImplementedError(f"task {self.name} has no body")
        if self._async:
            note_run_context()
        if self.bind:
            return self._fun(self, *args, **kwargs)
        return self._fun(*args, **kwargs)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the body here and now, like calling the function.

        A worker calls this (not ``run``) when a subclass overrides it, so a base class
        can wrap every run (an app context, a DB session, tracing), as in Celery.
        """
        result: R = self.run(*args, **kwargs)
        return result

    # Marks the plain __call__ (see trace.body_of); it points at itself so that a wrapper
    # made with functools.wraps, which copies the attribute, is still seen as an override.
    __call__._celeriac_plain_call = __call__  # type: ignore[attr-defined]

    # publishing -------------------------------------------------------------------------
    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Publish with positional and keyword arguments (``apply_async`` shortcut)."""
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Async twin of ``delay``."""
        return await self.aapply_async(args, kwargs)

    def delay_on_commit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """``delay`` once Django's current transaction commits (at once outside one); nothing
        is sent if it rolls back. Returns nothing: the task does not exist before the commit."""
        on_commit(functools.partial(self.delay, *args, **kwargs))

    def apply_async_on_commit(self, *args: Any, **kwargs: Any) -> None:
        """``apply_async`` once Django's current transaction commits; see ``delay_on_commit``."""
        on_commit(functools.partial(self.apply_async, *args, **kwargs))

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AsyncResult[R]:
        """Publish a message for a worker; returns an AsyncResult (EagerResult when eager)."""
        if self.app.conf["task_always_eager"]:
            return self.apply(args, kwargs, **options)
        request = self.app.build_request(self.name, args, kwargs, options, self)
        await self.app.apublish([request])
        return add_child(self.AsyncResult(request.message.id))

    def _apply_async_here(
        self, *, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, **options: Any
    ) -> AsyncResult[R]:
        """It publishes from the calling thread where the broker can (``app.publish``)."""
        if self.app.conf["task_always_eager"]:
            return self.apply(args, kwargs, **options)
        request = self.app.build_request(self.name, args, kwargs, options, self)
        self.app.publish([request])
        return add_child(self.AsyncResult(request.message.id))

    apply_async = sync_twin(aapply_async, here=_apply_async_here)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> EagerResult[R]:
        """Run the task in this process, through real serialization, and return its result."""
        if options.get("link") or options.get("link_error"):
            # The signature runs the task, then its callbacks or errbacks, all eagerly.
            result: EagerResult[R] = self.signature(args, kwargs, **options).apply()
            return result
        return apply_eagerly(self, args, kwargs, options)

    # signatures (canvas) ----------------------------------------------------------------
    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature with partial arguments: ``add.s(2)``."""
        return Signature(self.name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: the parent's result is not prepended."""
        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    def signature(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A signature with options (Celery's ``Task.signature``)."""
        return Signature(
            self.name, tuple(args or ()), dict(kwargs or {}), options=options, app=self.app
        )

    subtask = signature

    def chunks(self, it: Any, n: int) -> chunks:
        """Split ``it`` (argument tuples) into ``n``-sized chunks, each run as one task."""
        return chunks(self.s(), it, n)

    def map(self, it: Any) -> xmap:
        """Run the task once per item of ``it``, inside one task (``celery.map``)."""
        return xmap(self.s(), it)

    def starmap(self, it: Any) -> xstarmap:
        """Like ``map`` with each item unpacked as arguments (``celery.starmap``)."""
        return xstarmap(self.s(), it)

    # inside a running task --------------------------------------------------------------
    def retry(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        exc: BaseException | None = None,
        throw: bool = True,
        eta: dt.datetime | None = None,
        countdown: float | None = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Retry:
        """Ask for this invocation to run again later; raises Retry (the worker re-sends it).

        When retries are used up, re-raises ``exc`` or MaxRetriesExceededError.
        """
        req = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and req.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"Can't retry {self.name}[{req.id}] args:{req.args} kwargs:{req.kwargs}"
            )
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        when = eta.timestamp() - clock.wall() if eta is not None else countdown
        retry = Retry(exc=exc, when=when)
        retry.retry_args = list(args) if args is not None else None  # type: ignore[attr-defined]
        retry.retry_kwargs = dict(kwargs) if kwargs is not None else None  # type: ignore[attr-defined]
        retry.eta = eta  # type: ignore[attr-defined]
        if not throw:
            return retry
        raise retry

    def replace(self, sig: Any) -> Any:
        """Replace this running task by ``sig`` (a task, chain or group signature): see
        :mod:`celeriac.canvas.replace`. Raises Ignore (the worker stores nothing for this
        task; the replacement's result appears under its id)."""
        return _replace(self, sig)

    def add_to_chord(self, sig: Any, lazy: bool = False) -> Any:
        """Add ``sig`` to the chord this task is a header member of; its AsyncResult."""
        return _add_to_chord(self, sig, lazy)

    def update_state(
        self, task_id: str | None = None, state: str | None = None, meta: Any = None, **kwargs: Any
    ) -> None:
        """Record a custom state (e.g. progress) for this task."""
        task_id = task_id or self.request.id
        if task_id is None:
            raise RuntimeError("update_state needs a task_id outside a running task")
        document = make_meta(task_id, state or "PENDING", meta, extra=kwargs or None)
        sink = state_sink()
        if sink is not None and current_request() is not None:
            sink(task_id, document)  # ordered with the worker's own writes (STARTED)
            return

        async def store() -> None:
            backend = await self.app.aget_backend()
            await backend.store([(task_id, document)])

        self.app.run_sync(store())

    @property
    def backend(self) -> Any:
        """The app's result store, from sync code (``app.backend``)."""
        return self.app.backend

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult[R]:
        """A handle on a result of this task."""
        result: AsyncResult[R] = self.app.AsyncResult(task_id, task_name=self.name, **kwargs)
        return result

    # handlers a base class may override (Celery's names) --------------------------------
    def before_start(self, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        """Called before the body runs."""

    def on_success(
        self, retval: Any, task_id: str, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        """Called after the body returned."""

    def on_failure(
        self,
        exc: BaseException,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called after the body raised (and will not be retried)."""

    def on_retry(
        self,
        exc: BaseException | None,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called when the task is retried; ``exc`` is the retry's cause (None without one)."""

    def after_return(
        self,
        status: str,
        retval: Any,
        task_id: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        einfo: Any,
    ) -> None:
        """Called after the task returned, whatever the state."""


# --- the decorator's types ---------------------------------------------------------------------
if TYPE_CHECKING:

    class AsyncTask(Task[P, R]):
        """For type checkers only: the task of an ``async def`` function returning ``R``.
        Calling it gives the coroutine; its results hold ``R``. (At run time such a task
        is a plain :class:`Task`.)"""

        def __call__(  # type: ignore[override]  # a coroutine of R, not R
            self, *args: P.args, **kwargs: P.kwargs
        ) -> Coroutine[Any, Any, R]: ...


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` returns: it turns a function into a task of its types."""

    @overload
    def __call__(self, fun: Callable[_P, Coroutine[Any, Any, _R]], /) -> AsyncTask[_P, _R]: ...

    @overload
    def __call__(self, fun: Callable[_P, _R], /) -> Task[_P, _R]: ...


class BoundTaskDecorator(Protocol):
    """What ``@app.task(bind=True, ...)`` returns: the function's first parameter (the task
    itself) is not one of the task's arguments."""

    @overload
    def __call__(
        self, fun: Callable[Concatenate[Any, _P], Coroutine[Any, Any, _R]], /
    ) -> AsyncTask[_P, _R]: ...

    @overload
    def __call__(self, fun: Callable[Concatenate[Any, _P], _R], /) -> Task[_P, _R]: ...


# --- the decorator ----------------------------------------------------------------------------
def _task_name(app: Celery | None, fun: Callable[..., Any]) -> str:
    module = fun.__module__
    if module == "__main__" and app is not None and app.main:
        module = app.main
    return f"{module}.{fun.__name__}"


_NOT_ATTRIBUTES = frozenset({"name", "base", "shared", "lazy", "pydantic"})

# Celery task attributes that change how Celery runs a task and that celeriac does not
# implement: given as options they would be kept with no effect, so they get a warning.
NO_EFFECT_OPTIONS = {
    "Request": "celeriac's worker has no Request class to replace",
    "Strategy": "celeriac's worker has no task strategies",
    "start_strategy": "celeriac's worker has no task strategies",
    "backend": "every task uses the app's result backend",
    "resultrepr_maxsize": "the logged result is truncated at a fixed length",
    "shadow_name": "give apply_async(shadow=...) instead",
    "from_config": "task defaults are read from the settings table",
    "request_stack": "the request is a context variable",
}


def _warn_typos(fun: Callable[..., Any], options: Mapping[str, Any]) -> None:
    """Warn about options that would be kept with no effect: Celery's unsupported ones and
    probable typos of known ones."""
    for key in sorted(set(options) & NO_EFFECT_OPTIONS.keys()):
        warnings.warn(
            f"task {fun.__module__}.{fun.__name__}: option {key!r} has no effect in celeriac"
            f" ({NO_EFFECT_OPTIONS[key]})",
            stacklevel=4,
        )
    for key in set(options) - TASK_OPTIONS:
        close = difflib.get_close_matches(key, sorted(TASK_OPTIONS), n=1, cutoff=0.8)
        if close and not hasattr(Task, key):
            warnings.warn(
                f"task {fun.__module__}.{fun.__name__}: option {key!r} is not a task option"
                f" (did you mean {close[0]!r}?); it is kept as a task attribute",
                stacklevel=4,
            )


def _base_class(app: Celery | None, options: Mapping[str, Any]) -> type[Task]:
    base: type[Task] | None = options.get("base")
    if base is None and app is not None:
        base = app.Task
    return base or Task


def _create_task(app: Celery | None, fun: Callable[..., Any], options: Mapping[str, Any]) -> Task:
    """One class per task, its options as class attributes, as Celery makes them: a
    function given as an option (``on_failure=fn``) becomes a method of the task."""
    _warn_typos(fun, options)
    attrs: dict[str, Any] = {"__module__": fun.__module__, "__doc__": fun.__doc__}
    for key, value in options.items():
        if key in _NOT_ATTRIBUTES:
            continue
        if key in {"autoretry_for", "dont_autoretry_for", "throws"}:
            value = tuple(value)
        attrs[key] = value
    cls = type(fun.__name__, (_base_class(app, options),), attrs)
    task: Task = cls()
    task._app = app
    task._fun = fun
    task._async = inspect.iscoroutinefunction(fun)
    task.name = options.get("name") or _task_name(app, fun)
    task.__wrapped__ = fun  # type: ignore[attr-defined]
    return task


def make_task_decorator(app: Celery | None, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """Implement ``@app.task`` / ``@app.task(...)`` / ``@shared_task``."""

    def register(fun: Callable[..., Any]) -> Task:
        task = _create_task(app, fun, options)
        if app is not None:
            app.register_task(task)
        else:
            _register_shared(task)
        return task

    if len(args) == 1 and callable(args[0]) and not options:
        return register(args[0])
    if args:
        raise TypeError("@task takes options only as keyword arguments")
    return register


def _register_shared(task: Task) -> None:
    def add_to(app: Celery) -> None:
        app.tasks.setdefault(task.name, task)

    _state.shared_task_constructors().append(add_to)
    current = _state._current
    if current is not None:
        add_to(current)


@overload
def shared_task(fun: Callable[_P, Coroutine[Any, Any, _R]], /) -> AsyncTask[_P, _R]: ...


@overload
def shared_task(fun: Callable[_P, _R], /) -> Task[_P, _R]: ...


@overload
def shared_task(*, bind: Literal[True], **options: Any) -> BoundTaskDecorator: ...


@overload
def shared_task(*, bind: Literal[False] = ..., **options: Any) -> TaskDecorator: ...


@overload
def shared_task(*, bind: bool, **options: Any) -> Callable[[Callable[..., Any]], Task]: ...


def shared_task(*args: Any, **options: Any) -> Any:
    """Like ``@app.task`` but not tied to one app: it is registered on every app."""
    return make_task_decorator(None, args, options)


def get_current_task() -> Task | None:
    """The task running in this thread or coroutine, or None outside a task."""
    request = current_request()
    found: Task | None = None if request is None else request.task_object
    return found


current_task: Any = Proxy(get_current_task, name="current_task")
"""The running task, as Celery's ``current_task`` (falsy outside a task)."""
