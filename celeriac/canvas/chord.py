"""Chords: a group (the header) whose results, in group order, feed one body task.

``chord(header, body)``, ``chord(header)(body)`` and ``group(...) | body`` are chords.
Wire format (SPEC §2.6, §5.3): every header message carries ``group=<gid>``,
``group_index=i`` and ``embed.chord`` = the body signature with its pre-assigned
``task_id`` and ``group_id``; the body is not published by the client. Before
publishing, the client records the chord size in the result backend
(``set_chord_size``, Celery's ``celery-taskset-meta-<gid>.s`` on Redis). Each worker
finishing a header task records its part with the backend's atomic
``chord_part_done``; the one that completes the chord publishes the body with
``[[results in group_index order]] + body.args``. No ``chord_unlock`` polling task.

A header member must produce one result: a chain ending in a group, chunks or a
chord with a group body in a header raise NotImplementedError (Celery saves and
joins such "complex" headers; celeriac does not yet).

Failure semantics (as Celery's Redis backend): a header task that fails (or is
revoked) does not stop the others; once every header part is in, the body does
not run; its result becomes FAILURE with ``ChordError("Dependency <tid> raised
<exc>")`` naming the first failed header task in group order, the results that
would have followed it (a body chain's tasks) fail the same way, and the body's
errbacks (``link_error`` on the chord) run. A chord never hangs on a failure.

``link``/``link_error``/``task_id`` given to a chord apply to its body; other
options (queue, countdown, ...) apply to the header tasks and the body. A chord's
result is the body's result; its ``.parent`` is the header's GroupResult.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac import states
from celeriac.canvas.group import group, listify
from celeriac.canvas.signature import (
    Dispatch,
    Signature,
    as_signature,
    make,
    new_id,
    result_root,
    to_dict,
)
from celeriac.canvas.stamping import merge_stamps
from celeriac.protocol.results import exception_from_dict
from celeriac.result import GroupResult

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["chord", "chord_error_message"]

# Options that belong to the body only (the rest go to the header tasks as well).
_BODY_ONLY = ("link", "link_error", "chain", "group_id", "group_index", "chord", "task_id")


def chord_error_message(task_id: str, state: str, value: Any) -> str:
    """Celery's text for a failed header part: ``Dependency <tid> raised ValueError('x')``."""
    exc = exception_from_dict(value) if isinstance(value, dict) else value
    if state == states.REVOKED and not isinstance(exc, BaseException):
        return f"Dependency {task_id} was revoked"
    return f"Dependency {task_id} raised {exc!r}"


class chord(Signature):
    """A header group and a body called with the list of the header's results."""

    kind = "chord"

    def __init__(
        self,
        header: Any,
        body: Any = None,
        task_id: str | None = None,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        app: Celery | None = None,
        **options: Any,
    ) -> None:
        head = header if isinstance(header, group) else _as_group(header, app)
        tail = as_signature(body, app) if body is not None else None
        app = app or head._app or (tail._app if tail is not None else None)
        structure = {"kwargs": dict(kwargs or {}), "header": head, "body": tail}
        super().__init__("celery.chord", args, structure, options, subtask_type="chord", app=app)
        if task_id:
            self.options["task_id"] = task_id

    @classmethod
    def _from_items(cls, data: Mapping[str, Any], app: Celery | None) -> Signature:
        sig = super()._from_items(data, app)
        structure = sig["kwargs"]
        structure["header"] = _as_group(structure.get("header") or [], app)
        if structure.get("body") is not None:
            structure["body"] = as_signature(structure["body"], app)
        structure.setdefault("kwargs", {})
        return sig

    @property
    def header(self) -> group:
        """The header group."""
        head: group = self["kwargs"]["header"]
        return head

    @property
    def tasks(self) -> list[Signature]:
        """The header's members (Celery's ``chord.tasks``)."""
        return self.header.tasks

    @property
    def body(self) -> Signature | None:
        """The body signature (None until given, as in ``chord(header)(body)``)."""
        body: Signature | None = self["kwargs"].get("body")
        return body

    @body.setter
    def body(self, value: Any) -> None:
        """Set the body (a signature or a wire dict)."""
        self["kwargs"]["body"] = as_signature(value, self._app)

    def stamp(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> chord:
        """Stamp the header tasks (``on_chord_header_start``/``_end``) and, with a visitor,
        the body (``on_chord_body``), as Celery does."""
        hooks = ("on_chord_header_start", "on_chord_header_end")
        given = self._stamp_members(self.tasks, visitor, append_stamps, headers, hooks)
        body = self.body
        if visitor is not None and body is not None:
            found = visitor.on_chord_body(self, **given)
            body.stamp(visitor, append_stamps, **merge_stamps(given, found, append_stamps))
        return self

    def clone(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Signature:
        """A deep copy; ``args`` become partial args of every header task."""
        sig = copy.deepcopy(self)
        if args and not sig.immutable:
            sig["args"] = [*args, *sig.args]
        if kwargs:
            sig["kwargs"]["kwargs"] = {**sig["kwargs"].get("kwargs", {}), **kwargs}
        sig["options"] = {**sig.options, **options}
        return sig

    def _needs_body(self) -> Signature:
        if self.body is None:
            raise ValueError("chord has no body: use chord(header, body) or chord(header)(body)")
        return self.body

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> Any:
        """Assign the group id, header ids and body id now; return the body's result."""
        body = self._needs_body()
        gid = str(self.header.options.setdefault("task_id", new_id()))
        self.options["task_id"] = gid  # as Celery: a frozen chord's own id is its group's
        body_result = body.freeze(
            _id, group_id=group_id or gid, chord=chord, root_id=root_id, group_index=group_index
        )
        header_result = self.header.freeze(gid, root_id=root_id, parent_id=parent_id)
        result_root(body_result).parent = header_result
        return body_result

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Callbacks of a chord are callbacks of its body."""
        return self._needs_body().link(callback)

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Errbacks of a chord are errbacks of its body (run when a header task fails)."""
        return self._needs_body().link_error(errback)

    def result_ids(self) -> list[str]:
        """Ids of the header members' and the body's results (when frozen)."""
        return [*self.header.result_ids(), *self._needs_body().result_ids()]

    def ends_in_group(self) -> bool:
        """Whether the body is a group."""
        return self._needs_body().ends_in_group()

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``chord | task`` extends the body; ``chord | group`` chains them."""
        if not isinstance(other, Mapping):
            return NotImplemented
        other = as_signature(other, self._app)
        if isinstance(other, group):
            return make("chain", self, other, app=self._app)
        sig = self.clone()
        assert isinstance(sig, chord)
        sig.body = sig._needs_body() | other
        return sig

    def _split(self, options: Mapping[str, Any]) -> tuple[Signature, str, dict[str, Any], Any]:
        """A frozen body copy, the group id, the header's options and the body's result."""
        opts = {**self.options, **options}
        body = copy.deepcopy(self._needs_body())
        gid = str(self.header.options.get("task_id") or new_id())
        own = {key: opts.pop(key, None) for key in _BODY_ONLY}
        for callback in listify(own["link"]):
            body.link(callback)
        for errback in listify(own["link_error"]):
            body.link_error(errback)
        body_opts = {k: v for k, v in opts.items() if k not in ("parent_id", "countdown", "eta")}
        if own["chain"] is not None:
            body_opts["chain"] = own["chain"]
        body.set(**body_opts)
        body_result = body.freeze(
            own["task_id"],
            group_id=own["group_id"] or gid,
            chord=own["chord"],
            root_id=opts.get("root_id"),
            group_index=own["group_index"],
        )
        return body, gid, opts, body_result

    def _emit(
        self,
        dispatch: Dispatch,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        body, gid, header_opts, body_result = self._split(options)
        header = copy.deepcopy(self.header)
        partial = [*args, *self.args] if not self.immutable else list(args)
        parts = _header_size(header)
        if parts == 0:
            # Nothing will ever complete an empty header: call the body now, as Celery does.
            parent = {"parent_id": header_opts["parent_id"]} if header_opts.get("parent_id") else {}
            body._emit(dispatch, ([],), {}, parent)
            header_result = GroupResult(gid, [], app=self.app)
        else:
            dispatch.chord_size(gid, parts)
            header_opts.update(task_id=gid, chord=to_dict(body))
            header_result = header._emit(
                dispatch, partial, {**self["kwargs"].get("kwargs", {}), **kwargs}, header_opts
            )
        result_root(body_result).parent = header_result
        return body_result

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        propagate: bool = True,
        **options: Any,
    ) -> Any:
        """Run the header here, then the body with its results, as Celery's eager chord:
        a failed header task raises its exception here (``propagate``), or its exception
        is passed to the body among the results (``propagate=False``)."""
        body, gid, header_opts, _ = self._split(options)
        for key in ("link", "link_error", "chord", "chain"):
            header_opts.pop(key, None)
        partial = [*(args or ()), *self.args] if not self.immutable else list(args or ())
        header_result = self.header.apply(partial, kwargs, **{**header_opts, "task_id": gid})
        result = body.apply((header_result.get(propagate=propagate),))
        result_root(result).parent = header_result
        return result

    def __call__(self, body: Any = None, **options: Any) -> Any:
        """``chord(header)(body)``: apply with that body; returns the body's result."""
        sig = self.clone()
        assert isinstance(sig, chord)
        if body is not None:
            sig.body = body
        return sig.apply_async((), **options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _header_size(header: group) -> int:
    """How many parts complete the chord: one per member, each reporting once."""
    members = header.members()
    for member in members:
        if member.ends_in_group():
            # Its tasks would report to their own group, never to this chord's.
            raise NotImplementedError(
                f"chord header member {member!r} ends in a group (a chain ending in a group,"
                " chunks, or a chord with a group body); put those tasks in the header itself"
            )
    return len(members)


def _as_group(header: Any, app: Celery | None) -> group:
    """A header given as a list, generator, group or wire dict, as a group."""
    if isinstance(header, Mapping):
        sig = as_signature(header, app)
        return sig if isinstance(sig, group) else group(sig, app=app)
    members: Iterable[Any] = header
    return group(list(members), app=app)
