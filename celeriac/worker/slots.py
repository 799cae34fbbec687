"""Slots (``-P slots``): one process per execution slot, tasks run in-process.

``celeriac worker -P slots`` (or ``worker_pool = "slots"``) runs ``-c`` *slots*: each is a
complete worker process (its own event loop, broker connection and prefetch window) that
runs sync tasks in one thread of its own, under the supervisor of
:mod:`celeriac.worker.supervisor`. A task then costs no pipe, no pickling and no hand-off
between processes (prefork's parent pays about three times a thread's CPU per task), and
each core runs a loop of its own. What prefork gives is kept, per slot:

* a task that crashes its process (a segfault, ``os._exit``, the OOM killer) takes down
  only its slot. The supervisor replaces the slot, and the task is recorded as failed with
  :class:`~celeriac.exceptions.WorkerLostError` when its message comes back, as prefork's
  parent records it: its slot wrote the task's id in the :class:`SlotBoard` (shared memory)
  when it started it, and the supervisor moves the id of a slot that died while running it
  to the board's list of lost tasks, which every slot reads before running a redelivered
  message. With ``task_reject_on_worker_lost`` it runs again instead, as in Celery;
* a hard time limit fails the task at once (:class:`~celeriac.exceptions.TimeLimitExceeded`,
  recorded and acked by the slot's loop, which is not blocked), and the slot then retires:
  the thread that cannot be killed goes with its process;
* ``--max-tasks-per-child`` and ``--max-memory-per-child`` retire the slot after the task
  that reached the limit (memory by peak RSS, Celery's rule). A retiring slot stops
  fetching, gives back the messages it holds but has not started, lets the running task
  finish, writes its results and acks, and exits; the supervisor starts a fresh one.

This module holds the slot's side (:class:`Slot`: what it records and when it retires) and
the board both sides share. ``-P prefork``, the default, is Celery's pool: one consumer
process feeding forked children.
"""

from __future__ import annotations

import logging
import mmap
import os
import resource
import struct
from collections.abc import Callable
from typing import Any

from celeriac.transport import Reclaimer, Transport

__all__ = ["DEFAULT_SHAPE", "Slot", "SlotBoard"]

logger = logging.getLogger("celeriac.worker")

DEFAULT_SHAPE = "slots"
"""The pool name of slots (``-P slots``), as the banner and ``inspect stats`` show it."""

_ID_BYTES = 64
# pid, ready flag, the task it runs, its consumer id
_RECORD = struct.Struct(f"<qB{_ID_BYTES}s{_ID_BYTES}s")
_TASK_AT = 9  # offset of the task id in a record
_LOST_ENTRIES = 64
_LOST = struct.Struct(f"<{_ID_BYTES}s{_ID_BYTES}s")  # task id, why it was lost


def _pack_id(text: str) -> bytes:
    return text.encode()[:_ID_BYTES]


class SlotBoard:
    """Shared memory, mapped before the slots are forked: what each slot runs, what was lost.

    One record per slot (its pid, the id of the sync task it runs, empty when idle, and
    its transport's consumer id), written by that slot, read by the supervisor when the
    slot dies and by the slot that replaces it; and a ring of the
    last :data:`_LOST_ENTRIES` tasks whose slot died under them, written only by the
    supervisor, read by every slot.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._lost_at = _RECORD.size * count
        self._memory = mmap.mmap(-1, self._lost_at + 8 + _LOST.size * _LOST_ENTRIES)

    # the slot's side ----------------------------------------------------------------------
    def running(self, index: int, task_id: str) -> None:
        """Slot ``index`` (1-based) starts task ``task_id``."""
        self._memory[self._task_at(index) : self._task_at(index) + _ID_BYTES] = _pack_id(
            task_id
        ).ljust(_ID_BYTES, b"\0")

    def idle(self, index: int) -> None:
        """Slot ``index`` runs no task."""
        self._memory[self._task_at(index)] = 0

    def register(self, index: int, consumer_id: str) -> str:
        """Slot ``index`` runs in this process with this consumer; the previous one's id."""
        previous = self.consumer(index)
        _RECORD.pack_into(
            self._memory, _RECORD.size * (index - 1), os.getpid(), 0, b"", _pack_id(consumer_id)
        )
        return previous

    def ready(self, index: int) -> None:
        """Slot ``index`` has started and takes tasks."""
        self._memory[_RECORD.size * (index - 1) + 8] = 1

    def is_ready(self, index: int) -> bool:
        """Whether the process in slot ``index`` said it was ready."""
        return bool(self._memory[_RECORD.size * (index - 1) + 8])

    def consumer(self, index: int) -> str:
        """The consumer id slot ``index`` last registered ('' if none)."""
        *_, consumer = _RECORD.unpack_from(self._memory, _RECORD.size * (index - 1))
        return str(consumer.rstrip(b"\0").decode(errors="replace"))

    @staticmethod
    def _task_at(index: int) -> int:
        return _RECORD.size * (index - 1) + _TASK_AT

    def lost_reason(self, task_id: str) -> str | None:
        """Why ``task_id`` is known lost with its slot, or None: from the ring, or from the
        record of another slot that was running it (that slot died, and its message came
        back before the supervisor noticed)."""
        # The records first, then the ring: :meth:`lose` writes the ring before it clears
        # the record, so a record read clear means the ring already holds the task (read
        # the other way round, a lose between the two reads hid it from both).
        me = os.getpid()
        for index in range(1, self.count + 1):
            pid, running = self.record(index)
            if running == task_id and pid not in (0, me) and not _alive(pid):
                return f"the slot running it (pid {pid}) died"
        key = _pack_id(task_id)
        for offset in range(0, _LOST.size * _LOST_ENTRIES, _LOST.size):
            lost, why = _LOST.unpack_from(self._memory, self._lost_at + 8 + offset)
            if lost.rstrip(b"\0") == key:
                return str(why.rstrip(b"\0").decode(errors="replace"))
        return None

    # the supervisor's side ----------------------------------------------------------------
    def record(self, index: int) -> tuple[int, str]:
        """The pid of slot ``index`` and the task it runs ('' when idle)."""
        pid, _, task, _ = _RECORD.unpack_from(self._memory, _RECORD.size * (index - 1))
        return pid, str(task.split(b"\0", 1)[0].decode(errors="replace"))

    def lose(self, index: int, why: str) -> str | None:
        """Slot ``index`` died as ``why``: move the task it ran to the lost ring; its id."""
        _, task_id = self.record(index)
        if not task_id:
            return None
        (cursor,) = struct.unpack_from("<q", self._memory, self._lost_at)
        offset = self._lost_at + 8 + _LOST.size * (cursor % _LOST_ENTRIES)
        _LOST.pack_into(self._memory, offset, _pack_id(task_id), why.encode()[:_ID_BYTES])
        struct.pack_into("<q", self._memory, self._lost_at, cursor + 1)
        self.idle(index)  # only now: see lost_reason
        return task_id


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


class Slot:
    """One slot's own view: its record on the board, and when it has to retire.

    :meth:`wrap` turns the function a pool thread runs per task into one that keeps the
    record and counts; ``on_retire`` (set by the worker, called from the task's thread)
    asks the worker to retire with the reason.
    """

    def __init__(
        self,
        board: SlotBoard,
        index: int,
        *,
        max_tasks: int | None = None,
        max_memory: int | None = None,
    ) -> None:
        self.board = board
        self.index = index
        self.max_tasks = max_tasks
        self.max_memory = max_memory  # KiB, peak RSS
        self.done = 0
        self.on_retire: Callable[[str], None] | None = None
        self._retiring = False

    def wrap(self, run: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``run(payload)`` with the slot's record kept and its limits checked after it."""
        board, index = self.board, self.index

        def run_in_slot(payload: Any) -> Any:
            board.running(index, payload[1].id)
            try:
                return run(payload)
            finally:
                board.idle(index)
                self.done += 1
                self._check_limits()

        return run_in_slot

    async def take_over(self, transport: Transport) -> None:
        """Register this process's consumer; requeue at once what the slot's previous
        process held, if it died holding messages (the supervisor reaped it before starting
        this one, so it is dead), instead of waiting for the lease to run out."""
        if not isinstance(transport, Reclaimer):
            # The broker gives a dead connection's messages back by itself (RabbitMQ).
            self.board.register(self.index, "")
            return
        previous = self.board.register(self.index, transport.consumer_id)
        if previous and previous != transport.consumer_id:
            count = await transport.reclaim(previous)
            if count:
                logger.warning(
                    "slot %d: requeued %d message(s) its previous process held", self.index, count
                )

    def retire(self, why: str) -> None:
        """Ask the worker (once) to retire this slot."""
        if self._retiring or self.on_retire is None:
            return
        self._retiring = True
        self.on_retire(why)

    def _check_limits(self) -> None:
        if self.max_tasks is not None and self.done >= self.max_tasks:
            self.retire(f"it ran {self.done} tasks (max tasks per child: {self.max_tasks})")
        elif self.max_memory is not None:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
            if peak > self.max_memory:
                self.retire(
                    f"its peak memory is {peak} KiB (max memory per child: {self.max_memory} KiB)"
                )
