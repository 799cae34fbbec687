"""What the parts of the task handler share: its settings, and the record of one delivery.

A delivery that decodes to a registered task becomes a :class:`Flight`, which the checks
(:mod:`celeriac.worker.checks`), the run (:mod:`celeriac.worker.run`) and the conclusion
(:mod:`celeriac.worker.conclude`) pass along until its result and ack are queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celeriac.protocol.message import TaskMessage
from celeriac.task import Task
from celeriac.transport import Delivery
from celeriac.worker.executors.base import PendingJob

__all__ = ["Flight", "HandlerConfig"]


@dataclass
class HandlerConfig:
    """Worker settings the handler needs."""

    hostname: str
    accept: set[str]
    acks_late: bool = True
    track_started: bool = True
    time_limit: float | None = None
    soft_time_limit: float | None = None
    eta_hold_seconds: float = 2.0
    result_extended: bool = False
    reject_on_worker_lost: bool = False
    acks_on_failure: bool | None = None
    acks_on_timeout: bool | None = None
    acks_on_failure_or_timeout: bool | None = True
    store_errors_even_if_ignored: bool = False
    rate_limits: bool = True
    default_rate_limit: str | float | None = None
    max_message_size: int = 0
    """``task_message_max_size``: the largest body decoded, in bytes (0: no limit)."""
    revoked: set[str] = field(default_factory=set)


class Flight:
    """One decoded delivery, its message and its task, from receipt to result and ack.

    It is also the job's link back to the handler: the executor calls :meth:`done` with
    the outcome (in the loop's thread) and, when STARTED is tracked, :meth:`began` as the
    job starts (in any thread).
    """

    __slots__ = (
        "acks_late",
        "delivery",
        "job",
        "msg",
        "on_begin",
        "on_done",
        "task",
        "time_start",
        "tracked",
    )

    def __init__(
        self,
        delivery: Delivery,
        msg: TaskMessage,
        task: Task,
        acks_late: bool,
        on_done: Callable[[Flight, bool, Any], None],
        on_begin: Callable[[str, int], None],
    ) -> None:
        self.delivery = delivery
        self.msg = msg
        self.task = task
        self.acks_late = acks_late
        """Acked once concluded (else acked as its job is handed to an executor)."""
        self.on_done = on_done
        self.on_begin = on_begin
        self.tracked = False
        """Whether its STARTED is written should the job run long enough."""
        self.time_start: float | None = None
        """Epoch seconds its job was handed to an executor (None: not yet)."""
        self.job: PendingJob | None = None
        """The job on its executor, once started (remote control finds its process)."""

    def began(self, pid: int) -> None:
        """The executor started the job (``Job.on_start``; in any thread)."""
        self.on_begin(self.msg.id, pid)

    def done(self, ok: bool, value: Any) -> None:
        """The executor's callback: ``(True, Outcome)`` or ``(False, exception)``."""
        self.on_done(self, ok, value)
