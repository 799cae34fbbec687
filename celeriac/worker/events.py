"""The worker's events: ``worker-online``/``-heartbeat``/``-offline`` and the task events.

As a Celery worker does (``celery/worker/heartbeat.py``, ``consumer/events.py``), worker
events are sent whenever the broker can carry events, ``-E`` or not (but not with
``--without-heartbeat``): ``worker-online`` at start, ``worker-heartbeat`` every ``freq``
seconds (2 s) and ``worker-offline`` at shutdown, each with ``freq``, ``active``,
``processed``, ``loadavg`` and the software fields. Task events (``task-received``,
``-started``, ``-succeeded``, ``-failed``, ``-retried``, ``-revoked``, ``-rejected``) are
sent with ``-E`` / ``worker_send_task_events``, or after :meth:`WorkerEvents.enable`
(the ``enable_events`` control command), for tasks whose ``send_events`` is true.

Nothing here touches the broker: every event goes to the dispatcher's buffer
(:mod:`celeriac.events.dispatcher`), published in batches by its own task. The handler
calls the ``task_*`` methods only after checking :attr:`WorkerEvents.tasks` (one
attribute read per step when task events are off).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from celeriac import signals
from celeriac.events.dispatcher import EventDispatcher
from celeriac.events.event import SOFTWARE_INFO, load_average
from celeriac.protocol.message import TaskMessage, format_time, safe_repr
from celeriac.trace import Outcome

__all__ = ["HEARTBEAT_FREQ", "WorkerEvents"]

logger = logging.getLogger("celeriac.worker")

HEARTBEAT_FREQ = 2.0
"""Seconds between two ``worker-heartbeat`` events (Celery's default)."""


class WorkerEvents:
    """Sends one worker's events through its dispatcher (see the module docstring).

    ``counts()`` gives (tasks running now, tasks processed since start) for heartbeats.
    """

    def __init__(
        self,
        dispatcher: EventDispatcher,
        *,
        task_events: bool,
        counts: Callable[[], tuple[int, int]],
        freq: float = HEARTBEAT_FREQ,
        heartbeat: bool = True,
    ) -> None:
        self.dispatcher = dispatcher
        self.freq = freq
        self.beats = heartbeat
        """Whether worker events are sent (not with ``--without-heartbeat``)."""
        self._counts = counts
        dispatcher.groups = {"worker", "task"} if task_events else {"worker"}
        self.tasks = task_events
        """Whether task events are sent now."""
        self._heart: asyncio.Task[None] | None = None

    # switching task events --------------------------------------------------------------
    def enable(self) -> bool:
        """Send task events from now on; False if they were on already."""
        was = self.tasks
        self.dispatcher.groups.add("task")
        self.tasks = True
        return not was

    def disable(self) -> bool:
        """Stop sending task events; False if they were off already."""
        was = self.tasks
        self.dispatcher.groups.discard("task")
        self.tasks = False
        return was

    def set_task_events(self, enabled: bool) -> bool:
        """Remote control's switch (``enable_events`` / ``disable_events``)."""
        return self.enable() if enabled else self.disable()

    def send_heartbeat(self) -> None:
        """Remote control's ``heartbeat`` command."""
        self.heartbeat()

    # worker events ----------------------------------------------------------------------
    def start(self) -> None:
        """Send ``worker-online`` and start the heartbeat."""
        self.dispatcher.start()
        if not self.beats:
            return
        self._worker_event("worker-online")
        self._heart = asyncio.get_running_loop().create_task(
            self._beat(), name="celeriac-events-heartbeat"
        )

    def heartbeat(self) -> None:
        """Send a ``worker-heartbeat`` now (the ``heartbeat`` control command)."""
        self._worker_event("worker-heartbeat")

    async def stop(self) -> None:
        """Stop the heartbeat, send ``worker-offline``, publish what is left, close."""
        if self._heart is not None:
            self._heart.cancel()
            self._heart = None
            self._worker_event("worker-offline")
        try:
            await asyncio.wait_for(self.dispatcher.close(), timeout=5.0)
        except Exception as exc:
            logger.warning("closing the event dispatcher failed: %s", exc)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.freq)
            self._worker_event("worker-heartbeat")

    def _worker_event(self, type: str) -> None:
        active, processed = self._counts()
        self.dispatcher.send(
            type,
            freq=self.freq,
            active=active,
            processed=processed,
            loadavg=load_average(),
            **SOFTWARE_INFO,
        )
        if signals.heartbeat_sent.receivers:  # Celery's Heart sends it with each of the three
            signals.heartbeat_sent.send(sender=self)

    # task events (call only when ``tasks`` is true) -------------------------------------
    def task_received(self, msg: TaskMessage, task: Any) -> None:
        """``task-received``: the message was decoded for a registered task."""
        if not getattr(task, "send_events", True):
            return
        self.dispatcher.send(
            "task-received",
            uuid=msg.id,
            name=msg.task,
            args=msg.argsrepr if msg.argsrepr is not None else safe_repr(msg.args),
            kwargs=msg.kwargsrepr if msg.kwargsrepr is not None else safe_repr(msg.kwargs),
            root_id=msg.root_id or msg.id,
            parent_id=msg.parent_id,
            retries=msg.retries,
            eta=format_time(msg.eta),
            expires=format_time(msg.expires),
        )

    def task_started(self, msg: TaskMessage, task: Any) -> None:
        """``task-started``: the job was handed to its pool."""
        if getattr(task, "send_events", True):
            self.dispatcher.send("task-started", uuid=msg.id)

    def task_outcome(self, msg: TaskMessage, task: Any, outcome: Outcome) -> None:
        """The event of a job's outcome: succeeded, failed, retried or rejected."""
        if not getattr(task, "send_events", True):
            return
        state = outcome.state
        if state == "SUCCESS":
            self.dispatcher.send(
                "task-succeeded",
                uuid=msg.id,
                result=safe_repr(outcome.value),
                runtime=outcome.runtime,
            )
        elif state == "RETRY":
            self.dispatcher.send(
                "task-retried",
                uuid=msg.id,
                exception=outcome.exc_repr,
                traceback=outcome.traceback,
            )
        elif state == "REJECTED":
            self.dispatcher.send("task-rejected", uuid=msg.id, requeue=outcome.requeue)
        elif state == "FAILURE":
            self.task_failed(msg, outcome.exc_repr, outcome.traceback)

    def task_failed(self, msg: TaskMessage, exception: str | None, traceback: str | None) -> None:
        """``task-failed`` (also for a job whose process was lost)."""
        self.dispatcher.send("task-failed", uuid=msg.id, exception=exception, traceback=traceback)

    def task_revoked(
        self,
        msg: TaskMessage,
        task: Any,
        reason: str,
        *,
        terminated: bool = False,
        signum: int | None = None,
    ) -> None:
        """``task-revoked``: found revoked or expired before it ran, or terminated."""
        if getattr(task, "send_events", True):
            self.dispatcher.send(
                "task-revoked",
                uuid=msg.id,
                terminated=terminated,
                signum=signum,
                expired=reason == "expired",
            )
