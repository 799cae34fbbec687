"""Signatures: a task name with partial arguments and options, shaped like Celery's dict.

A signature is the very dict Celery puts on the wire (SPEC §2.3)::

    {"task", "args", "kwargs", "options", "subtask_type", "immutable"}

Composite signatures (``chain``, ``group``, ``chord``) subclass :class:`Signature`
and register their ``subtask_type`` here, so a dict read from a message becomes the
right class again (:func:`maybe_signature`).

Applying any signature goes through ``_emit(dispatch, args, kwargs, options)``: it
assigns the task ids (``options.task_id``, as Celery pre-assigns them), appends
the messages to publish to a :class:`Dispatch` and returns the result handle. The
dispatch then records chord sizes and publishes every message in one transport
call. Clients and workers (``celeriac.worker.workflow``) use the same code.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from celeriac import _state
from celeriac._portal import sync_twin
from celeriac.canvas.errbacks import run_errbacks_eagerly
from celeriac.canvas.stamping import merge_stamps, stamps_to_options
from celeriac.context import Context, add_child
from celeriac.masking import mask_url
from celeriac.protocol.ids import uuid4
from celeriac.result import EagerResult

if TYPE_CHECKING:
    from celeriac.app import Celery
    from celeriac.task import PublishRequest

__all__ = [
    "Dispatch",
    "Signature",
    "as_signature",
    "eager_request",
    "make",
    "maybe_signature",
    "new_id",
    "result_root",
    "signature",
    "signatures",
    "to_dict",
]

_ATOMIC = frozenset({str, int, float, bool, type(None)})

# Options that describe the canvas itself and never become publish options.
_CANVAS_ONLY = frozenset({"chord_size", "route_name", "subtask_type", "immutable"})
# Options holding signatures: turned into plain dicts before they go on the wire.
_SIGNATURE_OPTIONS = ("link", "link_error", "chain", "chord")


def to_dict(value: Any) -> Any:
    """A deep copy with every mapping (signatures included) as a plain dict."""
    if isinstance(value, Mapping):
        return {key: to_dict(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_dict(item) for item in value]
    if isinstance(value, tuple):
        return tuple(to_dict(item) for item in value)
    return value


def new_id() -> str:
    """A fresh task or group id."""
    return uuid4()


class Dispatch:
    """The messages one ``apply_async`` publishes, and the chord sizes to record first.

    ``allowed`` (the worker passes the set ``apply_async`` accepts) drops option keys
    a foreign client may have put in a signature, such as canvas stamps.
    """

    def __init__(self, app: Celery, allowed: frozenset[str] | None = None) -> None:
        self.app = app
        self.allowed = allowed
        self.requests: list[PublishRequest] = []
        self.chord_sizes: list[tuple[str, int]] = []

    def task(
        self, name: str, args: Sequence[Any], kwargs: Mapping[str, Any], options: Mapping[str, Any]
    ) -> PublishRequest:
        """Build the message of one task and queue it for publishing."""
        if not options:  # a bare signature (the usual bulk item): nothing to convert
            request = self.app.build_request(
                name, list(args), dict(kwargs), {}, self.app.tasks.get(name)
            )
            self.requests.append(request)
            return request
        opts = {
            k: v
            for k, v in stamps_to_options(options).items()
            if k not in _CANVAS_ONLY and v is not None
        }
        if self.allowed is not None:
            opts = {k: v for k, v in opts.items() if k in self.allowed}
        for key in _SIGNATURE_OPTIONS:
            if key in opts:
                opts[key] = to_dict(opts[key])
        request = self.app.build_request(
            name, list(args), dict(kwargs), opts, self.app.tasks.get(name)
        )
        self.requests.append(request)
        return request

    def chord_size(self, group_id: str, size: int) -> None:
        """Record ``size`` for chord ``group_id`` before any message is published."""
        self.chord_sizes.append((group_id, size))

    async def send(self) -> None:
        """Write the chord sizes, then publish all messages in one batch."""
        await self.write_chord_sizes()
        if self.requests:
            await self.app.apublish(self.requests)

    async def write_chord_sizes(self) -> None:
        """Record every chord's size in the result backend (before any member runs)."""
        if self.chord_sizes:
            backend = await self.app.aget_backend()
            if not backend.supports_chords:
                where = mask_url(str(self.app.result_backend_url))
                raise NotImplementedError(
                    f"chords are not supported by the {where} result "
                    "backend; use Redis or SQLite results for chords"
                )
            for group_id, size in self.chord_sizes:
                await backend.set_chord_size(group_id, size)


class Signature(dict[str, Any]):
    """``{"task", "args", "kwargs", "options", "subtask_type", "immutable"}``, as on the wire."""

    _kinds: ClassVar[dict[str, type[Signature]]] = {}
    kind: ClassVar[str | None] = None
    """The ``subtask_type`` this class stands for (None for a plain task)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind is not None:
            Signature._kinds[cls.kind] = cls

    def __init__(
        self,
        task: str | Mapping[str, Any] | Any = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
        *,
        subtask_type: str | None = None,
        immutable: bool = False,
        app: Celery | None = None,
        **extra_options: Any,
    ) -> None:
        if isinstance(task, Mapping):
            super().__init__(copy.deepcopy(dict(task)))
            self._app = app
            return
        name = task if isinstance(task, str) else getattr(task, "name", None)
        if app is None and task is not None and not isinstance(task, str):
            app = getattr(task, "app", None)
        super().__init__(
            task=name,
            args=list(args or ()),
            kwargs=dict(kwargs or {}),
            options={**dict(options or {}), **extra_options},
            subtask_type=subtask_type,
            immutable=immutable,
        )
        self._app = app

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], app: Celery | None = None) -> Signature:
        """The signature of the class named by ``subtask_type`` for a wire dict."""
        target = cls._kinds.get(str(data.get("subtask_type") or ""), Signature)
        return target._from_items(data, app)

    @classmethod
    def _from_items(cls, data: Mapping[str, Any], app: Celery | None) -> Signature:
        """Build this class from a dict without running ``__init__`` (subclasses convert)."""
        sig = cls.__new__(cls)
        dict.update(sig, copy.deepcopy(dict(data)))
        sig._app = app
        sig.setdefault("args", [])
        sig.setdefault("kwargs", {})
        sig.setdefault("options", {})
        sig.setdefault("subtask_type", cls.kind)
        sig.setdefault("immutable", False)
        return sig

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        # The app is shared, never copied: it holds locks and connections.
        clone = type(self).__new__(type(self))
        # deepcopy gives strings, numbers, None and booleans back as they are: skip the call.
        dict.update(
            clone,
            {
                key: value if type(value) in _ATOMIC else copy.deepcopy(value, memo)
                for key, value in self.items()
            },
        )
        clone.__dict__.update(self.__dict__)
        return clone

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), to_dict(self)))

    # attribute views ------------------------------------------------------------------------
    @property
    def app(self) -> Celery:
        """The app used to publish this signature."""
        app: Celery = self._app if self._app is not None else _state.get_current_app()
        return app

    @property
    def name(self) -> str:
        """The task name."""
        return str(self["task"])

    task = name

    @property
    def args(self) -> list[Any]:
        """Partial positional arguments."""
        return list(self.get("args") or [])

    @property
    def kwargs(self) -> dict[str, Any]:
        """Partial keyword arguments."""
        return dict(self.get("kwargs") or {})

    @property
    def options(self) -> dict[str, Any]:
        """Publish options (queue, countdown, link, ...)."""
        opts: dict[str, Any] = self.setdefault("options", {})
        return opts

    @property
    def subtask_type(self) -> str | None:
        """``chain``, ``group``, ``chord`` or None for a plain task."""
        value = self.get("subtask_type")
        return str(value) if value else None

    @property
    def immutable(self) -> bool:
        """Whether a parent's result is left out of the arguments."""
        return bool(self.get("immutable"))

    @property
    def id(self) -> str | None:
        """The pre-assigned task id, if any."""
        value = self.options.get("task_id")
        return str(value) if value is not None else None

    # building -----------------------------------------------------------------------------------
    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A deep copy with extra arguments (prepended unless immutable) and options."""
        sig = copy.deepcopy(self)
        if not sig.immutable:
            sig["args"] = [*(args or ()), *sig.args]
            sig["kwargs"] = {**sig.kwargs, **dict(kwargs or {})}
        sig["options"] = {**sig.options, **options}
        return sig

    def replace(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Signature:
        """A copy with ``args``, ``kwargs`` or ``options`` replaced (not merged), as
        Celery's ``Signature.replace``."""
        sig = self.clone()
        if args is not None:
            sig["args"] = list(args)
        if kwargs is not None:
            sig["kwargs"] = dict(kwargs)
        if options is not None:
            sig["options"] = dict(options)
        return sig

    # stamping (see celeriac.canvas.stamping) --------------------------------------------------
    def stamp(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> Signature:
        """Stamp this signature and its callbacks/errbacks with ``headers`` and the stamps
        ``visitor.on_signature`` returns; returns self."""
        self.stamp_links(visitor, append_stamps, **headers)
        found = visitor.on_signature(self, **headers) if visitor is not None else None
        return self.set(**merge_stamps(headers, found, append_stamps, self.options))

    def stamp_links(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> None:
        """Stamp the ``link`` and ``link_error`` signatures (``on_callback``/``on_errback``)."""
        for key, hook in (("link", "on_callback"), ("link_error", "on_errback")):
            links = self.options.get(key)
            if not links:
                continue
            stamped = []
            for link in links if isinstance(links, list | tuple) else [links]:
                sig = as_signature(link, self._app)
                found = getattr(visitor, hook)(sig, **headers) if visitor is not None else None
                sig.stamp(visitor, append_stamps, **merge_stamps(headers, found, append_stamps))
                stamped.append(sig)
            self.options[key] = stamped

    def _stamp_members(
        self,
        members: Sequence[Signature],
        visitor: Any,
        append_stamps: bool,
        headers: Mapping[str, Any],
        hooks: tuple[str, str],
    ) -> dict[str, Any]:
        """Stamp a composite's members between ``visitor.<start hook>`` and ``<end hook>``;
        returns the headers the members got."""
        found = getattr(visitor, hooks[0])(self, **headers) if visitor is not None else None
        given = merge_stamps(headers, found, append_stamps, self.options)
        self.stamp_links(visitor, append_stamps, **given)
        for member in members:
            member.stamp(visitor, append_stamps, **given)
        if visitor is not None:
            getattr(visitor, hooks[1])(self, **given)
        return given

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:
        """Update options in place; return self."""
        if immutable is not None:
            self["immutable"] = immutable
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Mark as immutable (``.si()``)."""
        self["immutable"] = immutable

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run ``callback`` with this task's result when it succeeds."""
        self.options.setdefault("link", []).append(as_signature(callback, self._app))
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Run ``errback`` when this task fails."""
        self.options.setdefault("link_error", []).append(as_signature(errback, self._app))
        return errback

    def on_error(self, errback: Mapping[str, Any]) -> Signature:
        """Like ``link_error`` but returns self, for chaining calls."""
        self.link_error(errback)
        return self

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> Any:
        """Assign the task id (and group/chord membership) now; return the result handle.

        An id already assigned is kept, so a frozen signature publishes under that id.
        """
        opts = self.options
        task_id = opts.setdefault("task_id", _id or new_id())
        if group_id:
            opts.setdefault("group_id", group_id)
        if group_index is not None:
            opts["group_index"] = group_index
        if chord is not None:
            opts["chord"] = chord
        if root_id:
            opts.setdefault("root_id", root_id)
        if parent_id:
            opts.setdefault("parent_id", parent_id)
        return self.app.AsyncResult(str(task_id), task_name=self.name)

    def result_ids(self) -> list[str]:
        """Ids of every result this signature will produce once applied (when frozen)."""
        ids = [self.id] if self.id else []
        for step in self.options.get("chain") or ():
            ids += as_signature(step, self._app).result_ids()
        return ids

    def ends_in_group(self) -> bool:
        """Whether applying this ends in a group of results (not one task's result)."""
        return False

    # composing ----------------------------------------------------------------------------------
    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``a | b``: a chain (a group on the left makes a chord)."""
        if not isinstance(other, Mapping):
            return NotImplemented
        return make("chain", self, as_signature(other, self._app), app=self._app)

    # running --------------------------------------------------------------------------------------
    def _emit(
        self,
        dispatch: Dispatch,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        """Queue this task's message on ``dispatch``; return its AsyncResult.

        What ``self.clone(args, kwargs, **options).freeze()`` would publish, without the
        deep copy: the message is built from copies of the arguments and options here."""
        if self.immutable:
            args, kwargs = self.args, self.kwargs
        else:
            args, kwargs = [*args, *self.args], {**self.kwargs, **kwargs}
        request = dispatch.task(self.name, args, kwargs, {**self.options, **options})
        return self.app.AsyncResult(request.message.id, task_name=self.name)

    async def aapply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Publish this signature (extra args prepended, options merged); eager when configured."""
        if self.app.conf["task_always_eager"]:
            return self.apply(args, kwargs, **options)
        dispatch = Dispatch(self.app)
        result = self._emit(dispatch, tuple(args or ()), dict(kwargs or {}), options)
        await dispatch.send()
        return add_child(result)

    def _apply_async_here(
        self, *, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None, **options: Any
    ) -> Any:
        """Eager signatures run in the calling thread; the others publish from the portal."""
        if self.app.conf["task_always_eager"]:
            return self.apply(args, kwargs, **options)
        return add_child(self.app.run_sync(self.aapply_async(args, kwargs, **options)))

    apply_async = sync_twin(aapply_async, here=_apply_async_here)

    def delay(self, *args: Any, **kwargs: Any) -> Any:
        """Publish with extra arguments."""
        return self.apply_async(args, kwargs)

    async def adelay(self, *args: Any, **kwargs: Any) -> Any:
        """Async twin of ``delay``."""
        return await self.aapply_async(args, kwargs)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run here (eagerly), then its ``link``/``link_error`` signatures, also eagerly."""
        sig = self.clone(args, kwargs, **options)
        skip = {"link", "link_error", "chain", "chord", *_CANVAS_ONLY}
        opts = {k: v for k, v in stamps_to_options(sig.options).items() if k not in skip}
        result: EagerResult = sig.app.get_task(sig.name).apply(sig.args, sig.kwargs, **opts)
        if result.successful():
            for callback in sig.options.get("link") or ():
                as_signature(callback, self._app).apply((result.get(),))
        elif result.failed() and sig.options.get("link_error"):
            errbacks = [as_signature(e, self._app) for e in sig.options["link_error"]]
            request = eager_request(result, sig)
            run_errbacks_eagerly(sig.app, errbacks, request, result.result, result.traceback)
        return result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the task body directly with partial + given arguments."""
        sig = self.clone(args, kwargs)
        return sig.app.get_task(sig.name)(*sig.args, **sig.kwargs)

    def __repr__(self) -> str:
        args = ", ".join(
            [*(repr(a) for a in self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())]
        )
        return f"{self.name}({args}){'!' if self.immutable else ''}"


def make(kind: str, *args: Any, **kwargs: Any) -> Signature:
    """Construct the canvas class registered for ``kind`` (modules cannot import each other)."""
    factory: Any = Signature._kinds[kind]
    sig: Signature = factory(*args, **kwargs)
    return sig


def eager_request(result: EagerResult, sig: Signature) -> Context:
    """The request context an errback sees for a task run eagerly."""
    fields = {"id": result.id, "task": sig.name, "args": sig.args, "kwargs": sig.kwargs}
    return Context(**fields, root_id=result.id, is_eager=True, called_directly=False)


def _rebuild(cls: type[Signature], data: dict[str, Any]) -> Signature:
    """Unpickle a signature (its app is the current one on the other side)."""
    return cls._from_items(data, None)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """Create a signature from a name, task or dict (Celery's ``signature``)."""
    if isinstance(varies, Signature):
        return varies
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies, app=kwargs.get("app"))
    return Signature(varies, *args, **kwargs)


def maybe_signature(value: Any, app: Celery | None = None) -> Signature | None:
    """A Signature (of the right canvas class) from a wire dict; None stays None."""
    if value is None:
        return None
    return as_signature(value, app)


def as_signature(value: Any, app: Celery | None = None) -> Signature:
    """A Signature (of the right canvas class) from a signature or a wire dict."""
    if isinstance(value, Signature):
        if app is not None and value._app is None:
            value._app = app
        return value
    if isinstance(value, Mapping):
        return Signature.from_dict(value, app)
    raise TypeError(f"not a signature: {value!r}")


def signatures(items: Iterable[Any], app: Celery | None) -> list[Signature]:
    """``maybe_signature`` of each item (a Task becomes ``task.s()``)."""
    out = []
    for item in items:
        if not isinstance(item, Mapping) and callable(getattr(item, "s", None)):
            item = item.s()
        out.append(as_signature(item, app))
    return out


def result_root(result: Any) -> Any:
    """The first result of a parent chain (the one whose ``parent`` is unset)."""
    seen: set[int] = set()
    while getattr(result, "parent", None) is not None and id(result) not in seen:
        seen.add(id(result))
        result = result.parent
    return result
