"""Chains: run signatures one after another, each getting the previous result first.

``chain(a, b, c)``, ``chain([a, b, c])``, ``chain(a | b)`` and ``a | b | c`` are the
same chain; nested chains are flattened. Wire format (SPEC §2.6): every task id is
assigned by the client; only the first task is published, its ``embed.chain`` holds
the rest in *reverse* order; the worker pops the last element after each success.

Like Celery, a group followed by another step becomes a chord whose body is that
step (``chain(a, group(b, c), d)`` runs ``d([b_result, c_result])``), and a group of
one is just its member. Options given to ``apply_async`` go to the first task, except
``task_id``/``link`` (the last task) and ``link_error`` (every task).

The result of a chain is the result of its *last* task, whose ``.parent`` links go
back to the first. When a task fails, the tasks after it never run; the worker
marks their results FAILURE with the same exception (as Celery 5 does), so waiting
on the chain raises instead of hanging, and the failed task's errbacks run.
In eager mode (``apply()``) a chain stops at the first failure and returns that
failed result.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celeriac.canvas.chord import chord
from celeriac.canvas.compound import Compound
from celeriac.canvas.group import group, listify, unpack_tasks
from celeriac.canvas.signature import (
    Dispatch,
    Signature,
    as_signature,
    result_root,
    signatures,
    to_dict,
)

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["chain"]

# Options that end up on the last task of a chain rather than the first.
_LAST_TASK = ("task_id", "group_id", "group_index", "chord")


class chain(Compound):
    """Signatures run in sequence; ``apply_async()`` returns the last task's result.

    Partial ``args`` (``clone``, ``apply_async``) go to the first step.
    """

    kind = "chain"

    def __init__(self, *tasks: Any, app: Celery | None = None, **options: Any) -> None:
        steps: list[Signature] = []
        for sig in signatures(unpack_tasks(tasks), app):
            steps += sig.tasks if isinstance(sig, chain) else [sig]
        if app is None:
            app = next((s._app for s in steps if s._app is not None), None)
        super().__init__(
            "celery.chain", (), {"tasks": steps}, options, subtask_type="chain", app=app
        )

    @property
    def id(self) -> str | None:
        """The pre-assigned id of the last task (the chain's result)."""
        return self.tasks[-1].id if self.tasks else None

    def steps(self) -> list[Signature]:
        """Copies of the steps as they will run: flattened, groups before a step made chords."""
        flat: list[Signature] = []
        for task in self.tasks:
            flat += task.steps() if isinstance(task, chain) else [copy.deepcopy(task)]
        flat = [_unroll(step) for step in flat]
        out: list[Signature] = []
        for step in reversed(flat):
            if isinstance(step, group) and out:
                step = chord(step, out.pop(), app=self._app)
            out.append(step)
        out.reverse()
        return out

    def _prepare(
        self, options: Mapping[str, Any], attach: bool = True
    ) -> tuple[list[Signature], list[Any], dict[str, Any]]:
        """Freeze copies of the steps; return them, their results and the first task's options."""
        opts = {**self.options, **options}
        last = {key: opts.pop(key, None) for key in _LAST_TASK}
        links = listify(opts.pop("link", None)) if attach else []
        errbacks = listify(opts.pop("link_error", None)) if attach else []
        steps = self.steps()
        if not steps:
            raise ValueError("cannot apply an empty chain")
        results: list[Any] = []
        for position, step in enumerate(steps):
            for errback in errbacks:
                step.link_error(errback)
            if position < len(steps) - 1:
                results.append(step.freeze(root_id=opts.get("root_id")))
                continue
            for link in links:
                step.link(link)
            results.append(
                step.freeze(
                    last["task_id"],
                    group_id=last["group_id"],
                    chord=last["chord"],
                    root_id=opts.get("root_id"),
                    group_index=last["group_index"],
                )
            )
        for previous, result in itertools.pairwise(results):
            result_root(result).parent = previous
        return steps, results, opts

    def freeze(
        self,
        _id: str | None = None,
        group_id: str | None = None,
        chord: Mapping[str, Any] | None = None,
        root_id: str | None = None,
        parent_id: str | None = None,
        group_index: int | None = None,
    ) -> Any:
        """Assign every task id now (the steps are replaced by their frozen form)."""
        given = {
            "task_id": _id,
            "group_id": group_id,
            "chord": chord,
            "root_id": root_id,
            "group_index": group_index,
        }
        steps, results, _ = self._prepare(
            {k: v for k, v in given.items() if v is not None}, attach=False
        )
        self["kwargs"]["tasks"] = steps
        self.options["task_id"] = results[-1].id  # as Celery: the last task id
        return results[-1]

    def stamp(self, visitor: Any = None, append_stamps: bool = False, **headers: Any) -> chain:
        """Stamp every step (``visitor.on_chain_start``/``on_chain_end`` around them)."""
        hooks = ("on_chain_start", "on_chain_end")
        self._stamp_members(self.tasks, visitor, append_stamps, headers, hooks)
        return self

    def result_ids(self) -> list[str]:
        """Ids of every step's results (when frozen)."""
        return [tid for step in self.steps() for tid in step.result_ids()]

    def ends_in_group(self) -> bool:
        """Whether the last step is a group."""
        steps = self.steps()
        return bool(steps) and steps[-1].ends_in_group()

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``chain | task`` appends; ``chain | chain`` concatenates."""
        if not isinstance(other, Mapping):
            return NotImplemented
        other = as_signature(other, self._app)
        sig = copy.deepcopy(self)
        sig["kwargs"]["tasks"] = [
            *sig.tasks,
            *(other.tasks if isinstance(other, chain) else [other]),
        ]
        return sig

    def _emit(
        self,
        dispatch: Dispatch,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> Any:
        outer_rest = list(options.get("chain") or self.options.get("chain") or ())
        steps, results, opts = self._prepare({k: v for k, v in options.items() if k != "chain"})
        opts.pop("chain", None)
        first, rest = steps[0], steps[1:]
        embed = outer_rest + [to_dict(step) for step in reversed(rest)]
        if embed or "chain" in options:
            opts["chain"] = embed
        partial = [*args, *self.args] if not self.immutable else list(args)
        first._emit(dispatch, partial, kwargs, opts)
        return results[-1]

    def apply(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Any:
        """Run the steps here in order; stops at the first failure and returns it."""
        steps, _, opts = self._prepare(options)
        opts.pop("chain", None)
        partial = [*(args or ()), *self.args] if not self.immutable else list(args or ())
        last: Any = steps[0].apply(partial, kwargs, **opts)
        for step in steps[1:]:
            if not _succeeded(last):
                break
            result = step.apply((last.get(),))
            result_root(result).parent = last
            last = result
        return last

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Apply the chain (Celery's ``chain(...)()``)."""
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        return " | ".join(repr(t) for t in self.tasks) or "chain()"


def _unroll(step: Signature) -> Signature:
    """A group of one member is that member (Celery's ``maybe_unroll_group``)."""
    if isinstance(step, group) and len(step.tasks) == 1:
        member = step.tasks[0].clone()
        member.set(**{k: v for k, v in step.options.items() if k != "task_id"})
        return member
    return step


def _succeeded(result: Any) -> bool:
    """Whether an eager result (or every member of an eager group result) succeeded."""
    return bool(result.successful())
