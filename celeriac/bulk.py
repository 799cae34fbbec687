"""Publishing many task calls at once: ``app.send_many`` and the batch under the canvas.

``app.send_many([add.s(1, 2), add.s(3, 4).set(countdown=5), ...])`` checks and encodes
every item first (an unknown task or an argument the serializer refuses raises, naming
the item's index, before anything is sent), then publishes the messages in chunks of
:data:`CHUNK`, each chunk one transport publish: one round trip on Redis, one
confirmed batch on RabbitMQ, one transaction on SQLite and PostgreSQL. ``group`` and
``chunks`` publish their members the same way (``Dispatch.send``, ``app.apublish``).

The messages are Celery's, byte for byte, whichever path built them: the batch only
saves what a loop of ``apply_async`` repeats per call (a portal hop, a round trip, the
checks of the task's defaults), never a field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from celeriac.canvas.signature import Dispatch, Signature, as_signature
from celeriac.context import add_children
from celeriac.exceptions import NotRegistered
from celeriac.protocol.ids import uuid4
from celeriac.protocol.message import TaskMessage, safe_repr
from celeriac.publishing import PublishRequest, task_defaults

if TYPE_CHECKING:
    from celeriac.app import Celery

__all__ = ["CHUNK", "Batch", "name_item", "prepare"]

CHUNK = 10_000
"""Messages per transport publish (Redis stores up to this many in one plain round trip)."""


class Batch:
    """The messages of many items, the item each belongs to, and the items' results."""

    __slots__ = ("dispatch", "owners", "results")

    def __init__(self, dispatch: Dispatch, owners: list[int], results: list[Any]) -> None:
        self.dispatch = dispatch
        self.owners = owners
        """``owners[i]``: the index of the item request ``i`` belongs to."""
        self.results = results


def prepare(app: Celery, items: Iterable[Any], options: Mapping[str, Any]) -> Batch:
    """The messages of every item (a signature, or a signature's dict) and their results.

    ``options`` apply to every item, over its own options, as ``sig.apply_async(**options)``
    does. A plain task signature must name a task of ``app``; any error is raised naming
    the item's index, and the messages of the items before it are never sent.
    """
    dispatch = Dispatch(app)
    results: list[Any] = []
    owners: list[int] = []
    firsts: dict[str, PublishRequest] = {}
    for index, item in enumerate(items):
        try:
            sig = as_signature(item, app)
            # (the wire dict's items, read directly: the attribute views cost a call each)
            bare = type(sig) is Signature and not (options or sig["options"])
            first = firsts.get(sig["task"]) if bare else None
            args, kwargs = sig["args"], sig["kwargs"]
            if first is not None and type(args) is list and type(kwargs) is dict:
                request = _call_like(first, args, kwargs)
                dispatch.requests.append(request)
                results.append(sig.app.AsyncResult(request.message.id, task_name=sig["task"]))
                owners.append(index)
                continue
            if sig.kind is None and sig.name not in app.tasks:
                raise NotRegistered(f"task {sig.name!r} is not registered with this app")
            results.append(sig._emit(dispatch, (), {}, options))
        except Exception as exc:
            name_item(exc, index, "send_many")
            raise
        owners += [index] * (len(dispatch.requests) - len(owners))
        if bare and _is_template(app, dispatch.requests[-1]):
            firsts[sig.name] = dispatch.requests[-1]
    add_children(results)
    return Batch(dispatch, owners, results)


def _is_template(app: Celery, request: PublishRequest) -> bool:
    """Whether the later bare calls of this request's task can copy it (:func:`_call_like`).

    The request is a bare signature's call: what its message holds besides the ids and
    the arguments comes from the task's defaults and the task running here, the same for
    every call of the batch; unless the defaults give a time computed at each call
    (``expires`` in seconds), or router functions (which see the arguments) route it."""
    msg = request.message
    if msg.expires is not None or msg.eta is not None or request.compression:
        return False
    return task_defaults(app, msg.task, app.tasks.get(msg.task)).route is request.route


def _call_like(first: PublishRequest, args: list[Any], kwargs: dict[str, Any]) -> PublishRequest:
    """The request of a bare call of ``first``'s task with these arguments: ``first``'s
    message with its own ids and arguments, encoded from ``first``'s envelope."""
    model = first.message
    task_id = uuid4()
    msg = TaskMessage(
        id=task_id,
        task=model.task,
        args=list(args),
        kwargs=dict(kwargs),
        # Outside a task the root is the message itself; inside, the running task's root.
        root_id=task_id if model.root_id == model.id else model.root_id,
        parent_id=model.parent_id,
        time_limit=model.time_limit,
        soft_time_limit=model.soft_time_limit,
        ignore_result=model.ignore_result,
        priority=model.priority,
        argsrepr=safe_repr(args) if args else None,  # (a list's repr, as build_message)
    )
    return PublishRequest(
        msg, first.route, first.serializer, first.compression, first.delivery_mode, like=first
    )


def name_item(exc: BaseException, index: int, what: str) -> None:
    """Put ``item <index> of <what>`` in front of the message of ``exc`` (its type stays
    what callers catch), and in a note for exceptions whose first argument is not text."""
    where = f"item {index} of {what}()"
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{where}: {exc.args[0]}", *exc.args[1:])
    else:
        exc.add_note(where)
