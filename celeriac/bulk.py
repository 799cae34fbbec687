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
from celeriac.publishing import PublishRequest

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
            if sig.kind is None and sig.name not in app.tasks:
                raise NotRegistered(f"task {sig.name!r} is not registered with this app")
            results.append(sig._emit(dispatch, (), {}, options))
        except Exception as exc:
            name_item(exc, index, "send_many")
            raise
        owners += [index] * (len(dispatch.requests) - len(owners))
        if type(sig) is Signature and not (options or sig.options):
            _liken(dispatch.requests[-1], firsts)
    add_children(results)
    return Batch(dispatch, owners, results)


def _liken(request: PublishRequest, firsts: dict[str, PublishRequest]) -> None:
    """Point ``request`` at the batch's first request of its task (when it has nothing but
    its arguments of its own): it is then encoded from that one's envelope.

    Both are a bare signature's call of one task published from one place (one task
    context), so only the ids and the arguments differ, unless the task's defaults
    give a time that is computed at each call (``expires`` in seconds)."""
    msg = request.message
    if msg.expires is not None or msg.eta is not None or request.compression:
        return
    first = firsts.setdefault(msg.task, request)
    if first is not request:
        request.like = first


def name_item(exc: BaseException, index: int, what: str) -> None:
    """Put ``item <index> of <what>`` in front of the message of ``exc`` (its type stays
    what callers catch), and in a note for exceptions whose first argument is not text."""
    where = f"item {index} of {what}()"
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{where}: {exc.args[0]}", *exc.args[1:])
    else:
        exc.add_note(where)
