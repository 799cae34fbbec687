"""A running task hands its work on: ``Task.replace`` and ``Task.add_to_chord``.

``replace(sig)`` publishes ``sig`` in the task's place and ends the task with
:class:`~celeriac.exceptions.Ignore`, as Celery does: the replacement is frozen with the
task's own id, so whoever waits on the task's result gets the replacement's result; it
inherits the task's callbacks, errbacks, the rest of its chain and its chord membership. A
group becomes a chord whose body (``celery.accumulate``) returns the group's results. In
eager mode the replacement runs at once and its value is the task's return value.

``add_to_chord(sig)`` adds a task to the chord the running task belongs to: the chord's
size grows by one (the backend's ``add_to_chord``) and the chord body waits for it too.
Its result comes after the header's in the body's argument (Celery orders it next to the
task that added it, among tasks of equal index in no set order).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celeriac.canvas.chain import chain
from celeriac.canvas.group import group
from celeriac.canvas.signature import Signature, as_signature
from celeriac.exceptions import Ignore, ImproperlyConfigured

if TYPE_CHECKING:
    from celeriac.task import Task

__all__ = ["add_to_chord", "replace"]


def replace(task: Task, sig: Any) -> Any:
    """Replace the running ``task`` by ``sig`` (see the module docs); raises Ignore in a
    worker, returns the replacement's value when eager."""
    req = task.request
    sig = as_signature(sig, task.app).clone()
    if "chord" in sig.options:
        raise ImproperlyConfigured("A signature to replace with can not be a chord.")
    if isinstance(sig, chain) and not sig.tasks:
        raise ImproperlyConfigured("Cannot replace with an empty chain")
    if isinstance(sig, group):
        # A group has no result of its own to link onto: a chord's body gives it one.
        sig = sig | task.app.tasks["celery.accumulate"].s(index=0)
    for callback in req.callbacks or ():
        sig.link(callback)
    for errback in req.errbacks or ():
        sig.link_error(errback)
    # The chord membership goes in at freeze time: a group's chord would otherwise give its
    # body its own group id, and the body would report to the wrong chord.
    sig.freeze(
        req.id,
        group_id=req.group,
        chord=req.chord,
        root_id=req.root_id,
        group_index=req.group_index,
    )
    nesting = int(req.get("replaced_task_nesting") or 0) + 1
    sig.set(
        chord=req.chord,
        group_id=req.group,
        group_index=req.group_index,
        root_id=req.root_id,
        replaced_task_nesting=nesting,
    )
    if isinstance(sig, chain):
        for step in sig.tasks:
            step.set(replaced_task_nesting=nesting)
    for step in reversed(req.chain or ()):
        rest = as_signature(step, task.app).clone()
        rest.set(replaced_task_nesting=nesting)
        sig = sig | rest
    if req.is_eager:
        return sig.apply().get()
    sig.delay()
    raise Ignore("Replaced by new task")


def add_to_chord(task: Task, sig: Any, lazy: bool = False) -> Any:
    """Add ``sig`` to the chord of the running ``task``; its AsyncResult (or, when
    ``lazy``, the frozen signature, not yet published)."""
    req = task.request
    if not req.chord or not req.group:
        raise ValueError("Current task is not member of any chord")
    sig = as_signature(sig, task.app).clone()
    group_id = str(req.group)

    async def grow() -> int:
        backend = await task.app.aget_backend()
        return await backend.add_to_chord(group_id, 1)

    size = task.app.run_sync(grow())
    # A part index of its own (the engines keep one part per index): after the header's.
    _set_chord(sig, group_id, size - 1, req.chord, req.root_id)
    sig.freeze()
    return sig if lazy else sig.delay()


def _set_chord(sig: Signature, group_id: str, index: int, body: Any, root_id: str | None) -> None:
    sig.set(group_id=group_id, group_index=index, chord=body, root_id=root_id)
