"""Groups: run signatures in parallel; their results come back in group order.

``group(a, b)``, ``group([a, b])`` and ``group(generator)`` all work. Applying a
group publishes one message per member with the ``group=<gid>`` and
``group_index=i`` headers, all in one transport publish; no group-level message
exists (SPEC §2.6). Nested groups are flattened into their parent, as Celery does.
A member chain belongs to the group through its *last* task (that task carries
``group_id``/``group_index``), so the group's result holds the chain's final value.

On the wire a group signature is Celery's
``{"task": "celery.group", "kwargs": {"tasks": [...]}, "subtask_type": "group"}``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.compound import Compound
from celeriac.canvas.signature import Dispatch, Signature, as_signature, make, new_id, signatures
from celeriac.result import GroupResult

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["group", "listify", "unpack_tasks"]


def unpack_tasks(tasks: tuple[Any, ...]) -> tuple[Any, ...]:
    """``f(a, b)`` and ``f([a, b])`` / ``f(generator)`` both mean the members a, b."""
    if len(tasks) == 1 and not isinstance(tasks[0], Mapping) and isinstance(tasks[0], Iterable):
        return tuple(tasks[0])
    return tasks


def listify(value: Any) -> list[Any]:
    """An option that may hold one signature or a list of them, as a list."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value]
    return list(value)


class group(Compound):
    """Signatures applied in parallel; ``apply_async()`` returns a GroupResult.

    Partial ``args`` (``clone``, ``apply_async``) are given to every member.
    """

    kind = "group"

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        members = signatures(unpack_tasks(tasks), app)
        if app is None:
            app = next((m._app for m in members if m._app is not None), None)
        super().__init__(
            "celery.group", (), {"tasks": members}, options, subtask_type="group", app=app
        )

    def members(self) -> list[Signature]:
        """Copies of the members, nested groups flattened into this one."""
        out: list[Signature] = []
        for task in self.tasks:
            out += task.members() if isinstance(task, group) else [copy.deepcopy(task)]
        return out

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> GroupResult:
        """Assign the group id and every member's id now; return the GroupResult."""
        gid = str(self.options.setdefault("task_id", _id or new_id()))
        self["kwargs"]["tasks"] = members = self.members()
        results = [
            member.freeze(
                group_id=gid, chord=chord, root_id=root_id, parent_id=parent_id, group_index=index
            )
            for index, member in enumerate(members)
        ]
        return GroupResult(gid, results, app=self.app)

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Celery's rule: linked to the first member only, immutable (use a chord instead)."""
        sig = as_signature(callback, self._app).clone()
        sig.set(immutable=True)
        self.tasks[0].link(sig)
        return callback

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Linked to every member: any of them may fail."""
        for task in self.tasks:
            task.link_error(as_signature(errback, self._app).clone())
        return errback

    def stamp(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> group:
        """Stamp every member (``visitor.on_group_start``/``on_group_end`` around them)."""
        hooks = ("on_group_start", "on_group_end")
        self._stamp_members(self.tasks, visitor, append_stamps, headers, hooks)
        return self

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Spread the members out in time: member ``i`` gets ``countdown=start + i*step``;
        once past ``stop``, the rest get the last value below it (Celery's ``fxrange``);
        returns self."""
        countdown = float(start)
        for task in self.tasks:
            if not stop or countdown <= stop:
                task.set(countdown=countdown)
                countdown += step
            else:
                task.set(countdown=countdown - step)
        return self

    def result_ids(self) -> list[str]:
        """Ids of every member's results."""
        return [tid for member in self.members() for tid in member.result_ids()]

    def ends_in_group(self) -> bool:
        """A group is a group of results."""
        return True

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``group | task`` is a chord; ``group | group`` a chain of both."""
        if not isinstance(other, Mapping):
            return NotImplemented
        other = as_signature(other, self._app)
        if isinstance(other, group):
            return make("chain", self, other, app=self._app)
        return make("chord", self, other, app=self._app)

    def _emit(
        self,
        dispatch: Dispatch,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> GroupResult:
        opts = {**self.options, **options}
        if opts.pop("link", None):
            raise TypeError("Cannot add link to group: use a chord")
        errbacks = listify(opts.pop("link_error", None))
        gid = str(opts.pop("task_id", None) or new_id())
        chord = opts.pop("chord", None)
        for key in ("group_id", "group_index", "chain"):
            opts.pop(key, None)
        partial = [*args, *self.args] if not self.immutable else list(args)
        results = []
        for index, member in enumerate(self.members()):
            for errback in errbacks:
                member.link_error(errback)
            member_opts = {**opts, "group_id": gid, "group_index": index}
            if chord is not None:
                member_opts["chord"] = chord
            results.append(member._emit(dispatch, partial, kwargs, member_opts))
        return GroupResult(gid, results, app=self.app)

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> GroupResult:
        """Run every member here, in order; a GroupResult of their eager results."""
        opts = {**self.options, **options}
        gid = str(opts.pop("task_id", None) or new_id())
        for key in ("link", "link_error", "chord", "chain", "group_id", "group_index"):
            opts.pop(key, None)
        partial = [*(args or ()), *self.args] if not self.immutable else list(args or ())
        results = [
            member.apply(partial, kwargs, **opts, group_id=gid, group_index=index)
            for index, member in enumerate(self.members())
        ]
        return GroupResult(gid, results, app=self.app)

    def __call__(self, *partial_args: Any, **options: Any) -> Any:
        """Apply the group (Celery's ``group(...)()``)."""
        return self.apply_async(partial_args, **options)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"
