"""The ResultBackend interface: where task states and results are kept.

A backend stores Celery's result document (a dict: ``status``, ``result``,
``traceback``, ``children``, ``date_done``, ``task_id`` and optional extended fields)
under a task id, and lets clients wait for a ready state without spinning a core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "BlockingWaiter",
    "ChordPart",
    "Meta",
    "ReplySender",
    "ResultBackend",
    "Unavailable",
]

Meta = dict[str, Any]
"""A result document, shaped as Celery writes ``celery-task-meta-<id>``."""

ChordPart = tuple[str, str, Any]
"""(task id, state, result) of one finished chord header task."""


class ReplySender(Protocol):
    """How a worker sends results to each task's sender instead of storing them (rpc://)."""

    async def store_for(self, reply_to: str, items: Sequence[tuple[str, Meta]]) -> None:
        """Send result documents to the client whose reply queue is ``reply_to``.

        ``reply_to`` is the task message's; an empty one (a task sent without it) drops
        the documents, as Celery does.
        """


@runtime_checkable
class ResultBackend(Protocol):
    """Stores result documents; one instance per event loop. All methods are coroutines."""

    url: str

    supports_chords: bool
    """Whether :meth:`chord_part_done` can join chords; without it publishing a chord raises."""

    @property
    def replies(self) -> ReplySender | None:
        """Set when results travel to each task's sender rather than being stored by task
        id (rpc://): the worker hands them to it with the message's ``reply_to``."""

    @property
    def reply_queue(self) -> str | None:
        """The queue this client's results come back to (rpc://): tasks it sends name it
        as ``reply_to``. None where results are stored by task id."""

    async def connect(self) -> None:
        """Open connections; idempotent."""

    async def close(self) -> None:
        """Release connections."""

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Write result documents (task id, meta), pipelined, with ``result_expires``."""

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """Read documents; None where nothing is stored (PENDING)."""

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return the document once it is in a ready state, or the latest one at timeout.

        Must not busy-wait: use notifications where the engine has them, otherwise
        poll with a growing interval.
        """

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Remember the member ids of a group (``GroupResult.save``)."""

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved group, or None."""

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Record how many header results chord ``group_id`` waits for.

        Called by the client before it publishes the last header task, as Celery
        does (``celery-taskset-meta-<gid>.s`` on Redis). Parts already recorded are
        kept; a "done" mark left by an earlier chord with this id is cleared.
        """

    async def add_to_chord(self, group_id: str, count: int) -> int:
        """Make chord ``group_id`` wait for ``count`` more parts (``Task.add_to_chord``);
        return its new size. On Redis this is Celery's ``.t`` adjustment."""

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        """Record one finished chord header task, atomically.

        The chord is complete when as many parts as its size are recorded: the size
        stored by :meth:`set_chord_size` if any, else ``size``. ``size=None`` (what
        a worker passes: it does not know the size) means "only the stored size";
        without one the chord does not complete yet. Returns all parts in
        ``group_index`` order exactly once (to the caller that completed the chord),
        otherwise None.
        """

    async def cleanup(self) -> int:
        """Delete expired documents; return how many."""


class Unavailable(Exception):
    """A :class:`BlockingWaiter` cannot serve this call: wait through the asyncio backend."""

    def __init__(self, reason: str, left: float | None) -> None:
        super().__init__(reason)
        self.left = left
        """Seconds left of the caller's timeout (None: no timeout)."""


class BlockingWaiter(Protocol):
    """Waits for results from the calling thread (the sync API), where a backend has one.

    A fast path only: whatever it cannot serve, it refuses with :class:`Unavailable`.
    """

    def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Like :meth:`ResultBackend.wait`; raises :class:`Unavailable` to hand over."""

    def close(self) -> None:
        """Release connections."""
