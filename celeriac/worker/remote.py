"""The worker's side of remote control: its mailbox, and the state the commands read.

:class:`WorkerRemote` adapts a :class:`~celeriac.worker.worker.Worker` to the
:class:`~celeriac.control.panel.WorkerSide` the commands use, and runs the mailbox
(:mod:`celeriac.control.mailbox`) beside the consume loop. ``worker_enable_remote_control
= False`` starts none. ``enable_events``, ``disable_events`` and ``heartbeat`` reach the
worker's event dispatcher through ``Worker.events`` (an :class:`EventSwitch`; None while the
worker sends no events).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Protocol

from celeriac.control.mailbox import Mailbox
from celeriac.engines.options import broker_options
from celeriac.transport import QueueSpec
from celeriac.worker.executors.processes import ProcessExecutor
from celeriac.worker.flight import Flight

if TYPE_CHECKING:
    from celeriac.worker.worker import Worker

__all__ = ["EventSwitch", "WorkerRemote", "start_remote_control"]

logger = logging.getLogger("celeriac.worker.control")


class EventSwitch(Protocol):
    """What remote control asks of a worker's event dispatcher."""

    def set_task_events(self, enabled: bool) -> bool:
        """Switch task events; True when that changed something."""

    def send_heartbeat(self) -> None:
        """Send a ``worker-heartbeat`` now."""


class WorkerRemote:
    """A worker as remote-control commands see it."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self.hostname = worker.hostname
        self.app = worker.app
        self.pool_name = worker.pool_name
        self.concurrency = worker.concurrency
        self._started = time.monotonic()

    @property
    def queues(self) -> list[QueueSpec]:
        """The consumed queues."""
        return self._worker.queues

    @property
    def flights(self) -> dict[str, Flight]:
        """Decoded deliveries held, by task id."""
        handler = self._worker.handler
        return handler.flights if handler is not None else {}

    @property
    def totals(self) -> dict[str, int]:
        """Tasks run, by name."""
        handler = self._worker.handler
        return dict(handler.totals) if handler is not None else {}

    @property
    def revoked_ids(self) -> set[str]:
        """The revoked ids the worker skips."""
        handler = self._worker.handler
        return handler.config.revoked if handler is not None else set()

    @property
    def prefetch_limit(self) -> int:
        """The prefetch window."""
        return self._worker.prefetch_limit

    @property
    def prefetch_window(self) -> dict[str, Any]:
        """How the window is sized (``inspect stats``)."""
        return self._worker.window.describe(self._worker.concurrency)

    def uptime(self) -> float:
        """Seconds since the mailbox started."""
        return time.monotonic() - self._started

    def pool_pids(self) -> list[int]:
        """The pool's process ids."""
        pool = self._worker.sync_pool
        return pool.pids if isinstance(pool, ProcessExecutor) else [os.getpid()]

    def pid_of(self, flight: Flight) -> int | None:
        """The child running ``flight`` (processes pool), else this process."""
        pool = self._worker.sync_pool
        if (
            isinstance(pool, ProcessExecutor)
            and flight.job is not None
            and not flight.task.is_async
        ):
            return pool.pid_running(flight.job)
        return os.getpid()

    def end_with(self, flight: Flight) -> bool:
        """In a slot, end the slot's process with ``flight``'s sync task (``terminate``)."""
        return self._worker.end_slot_with(flight)

    def set_rate_limit(self, task_name: str, rate: Any) -> None:
        """Apply the new rate to the next deliveries of ``task_name``."""
        handler = self._worker.handler
        if handler is not None:
            handler.checks.rate_limiter.set(task_name, rate)

    def resize_pool(self, delta: int) -> str | None:
        """Grow or shrink a prefork pool, and the prefetch window with it."""
        pool = self._worker.sync_pool
        if not isinstance(pool, ProcessExecutor):
            return f"the {self.pool_name} pool has a fixed size (-c)"
        if delta == 0:
            return None
        if delta > 0:
            pool.grow(delta)
        elif pool.shrink(-delta) == 0:
            return "the pool is down to one process"
        self._worker.concurrency = self.concurrency = pool.capacity
        return None

    def autoscale(self, maximum: int | None, minimum: int | None) -> tuple[int, int] | str:
        """New autoscale bounds ``(max, min)``, and the prefetch window sized for the max;
        a string saying why not."""
        scaler = self._worker.autoscaler
        if scaler is None:
            return repr(ValueError("Autoscale not enabled"))
        try:
            high, low = scaler.update(maximum, minimum)
        except ValueError as exc:
            return str(exc)
        self._worker.concurrency = self.concurrency = high
        return high, low

    async def persist_revokes(self, task_ids: list[str], expires: float) -> None:
        """Persist through the transport, as ``app.control.revoke`` does."""
        transport = self._worker.transport
        if transport is not None and task_ids:
            await transport.revoke(task_ids, expires=time.time() + expires)

    async def add_queue(self, spec: QueueSpec) -> None:
        """Declare and start consuming ``spec``."""
        await self._worker.add_queue(spec)

    def cancel_queue(self, name: str) -> bool:
        """Stop consuming ``name``."""
        return self._worker.cancel_queue(name)

    def shutdown(self) -> None:
        """A warm shutdown."""
        self._worker.stop()

    def set_task_events(self, enabled: bool) -> bool | None:
        """Switch task events (None: this worker has no event dispatcher)."""
        events = self._worker.events
        return events.set_task_events(enabled) if events is not None else None

    def send_heartbeat(self) -> bool:
        """Send a heartbeat event now, when the worker has an event dispatcher."""
        events = self._worker.events
        if events is None:
            return False
        events.send_heartbeat()
        return True


async def start_remote_control(
    worker: Worker, stopping: asyncio.Event
) -> asyncio.Task[None] | None:
    """Open the worker's mailbox and serve it in a task (None when remote control is off,
    or the mailbox cannot be opened: the worker then runs without it, and says so)."""
    app = worker.app
    if not app.conf["worker_enable_remote_control"] or worker.transport is None:
        return None
    remote = WorkerRemote(worker)
    worker.remote = remote
    mailbox = Mailbox(remote, worker.transport, namespace=app.conf["control_exchange"])
    try:
        await mailbox.open(app.broker_url, broker_options(app.conf, app.broker_url))
    except Exception as exc:
        logger.warning(
            "%s: remote control is off (cannot open the mailbox: %s)", worker.hostname, exc
        )
        return None
    return asyncio.create_task(mailbox.serve(stopping), name="celeriac remote control")
