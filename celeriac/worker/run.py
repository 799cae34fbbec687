"""The run: hand a task's job to its executor, with its time limits and STARTED notes.

Sync tasks go to the pool (processes or threads), ``async def`` tasks to the event loop's
executor, always through the executor's callback API (``Executor.run``): a job costs a
callback, not a coroutine, task or future. Where the transport can tell whether the worker
still holds a message (:class:`~celeriac.transport.LeaseHolder`), the job's guard lets it
start only then; a job it stops ends as never started and its message goes back. Its
outcome comes back to the flight's :meth:`~celeriac.worker.flight.Flight.done`, in the
loop's thread.

While a job runs, the runner also carries what the task says about itself: its STARTED
state, written by one timer only for tasks still running :data:`STARTED_AFTER` seconds
after they began (:mod:`celeriac.worker.started`), and the task's own ``update_state``,
which supersedes a STARTED not yet written. With rpc:// results both travel to the task's
``reply_to``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from celeriac import states
from celeriac.backends import Meta, ResultBackend
from celeriac.protocol.results import make_meta
from celeriac.trace import context_for
from celeriac.transport import LeaseHolder
from celeriac.worker.executors.base import Executor, Job
from celeriac.worker.flight import Flight, HandlerConfig
from celeriac.worker.settle import Settler
from celeriac.worker.started import StartedNotes

__all__ = ["STARTED_AFTER", "Runner"]

STARTED_AFTER = 0.05
"""Seconds a task runs before its STARTED state is written (shorter tasks go straight to
their final state: the write would cost a round trip on the result's critical path)."""


_OVERWRITABLE = frozenset({states.PENDING, states.RECEIVED, states.STARTED})
"""States a late STARTED may replace (anything else was set by someone since)."""


class Runner:
    """Starts jobs on the executors and notes what running tasks report."""

    def __init__(
        self,
        sync_executor: Executor,
        async_executor: Executor,
        settler: Settler,
        config: HandlerConfig,
        backend: ResultBackend | None,
    ) -> None:
        self.sync_executor = sync_executor
        self.async_executor = async_executor
        self.settler = settler
        self.config = config
        self.keeps_states = backend is not None
        self.backend = backend
        self.started = StartedNotes(self._write_started, after=STARTED_AFTER)
        self._checks: set[asyncio.Task[None]] = set()
        self._live: set[str] = set()
        """Ids of the tasks handed to an executor whose outcome has not come back."""
        self.executing = 0
        """Jobs handed to an executor whose outcome has not come back."""
        self.reply_to: dict[str, str] | None = (
            {} if backend is not None and backend.replies is not None else None
        )
        """``reply_to`` of running tasks by id, when results travel to the sender (rpc://)."""
        transport = settler.transport
        self._leases = transport if isinstance(transport, LeaseHolder) else None
        """The transport, when it can tell whether it still holds a delivery."""

    def start(self, flight: Flight) -> None:
        """Hand the flight's job to its executor (acking it first unless it acks late)."""
        msg, task = flight.msg, flight.task
        if not flight.acks_late:
            self.settler.ack(flight.delivery)
        if self.reply_to is not None and msg.reply_to:
            self.reply_to[msg.id] = msg.reply_to
        job = self._job(flight)
        self.executing += 1
        self._live.add(msg.id)
        executor = self.async_executor if task.is_async else self.sync_executor
        flight.time_start = time.time()
        flight.job = executor.run(job, flight.done)

    def fail_unstarted(self, flight: Flight, exc: BaseException) -> None:
        """Conclude ``flight`` as if its job had ended with ``exc``, without running it."""
        if not flight.acks_late:
            self.settler.ack(flight.delivery)
        self.executing += 1
        self._live.add(flight.msg.id)
        flight.time_start = time.time()
        flight.done(False, exc)

    def ended(self, flight: Flight) -> None:
        """The job's outcome came back (before it is concluded): it reports no more states."""
        # The job's callback refers to the flight: without this the pair would wait for
        # the cyclic garbage collector, with everything they hold (the GC's scans of those
        # cost a busy worker about a fifth of its CPU).
        flight.job = None
        self.executing -= 1
        self._live.discard(flight.msg.id)
        if flight.tracked:
            self.started.finished(flight.msg.id)
        if self.reply_to:
            self.reply_to.pop(flight.msg.id, None)

    def task_state(self, task_id: str, meta: Meta) -> None:
        """A running task's own ``update_state``: it supersedes a STARTED not yet written."""
        self.started.superseded(task_id)
        self.settler.state(task_id, meta, self._reply_to(task_id))

    def _write_started(self, task_id: str, pid: int) -> None:
        meta = make_meta(task_id, states.STARTED, {"pid": pid, "hostname": self.config.hostname})
        if self.reply_to is not None:  # rpc://: states travel as messages, none to read
            self.settler.state(task_id, meta, self._reply_to(task_id))
            return
        check = asyncio.get_running_loop().create_task(self._started_unless_set(task_id, meta))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _started_unless_set(self, task_id: str, meta: Meta) -> None:
        """Write STARTED unless someone set the task's state meanwhile: STARTED is written
        a moment after the task began, and must not replace an ``abort()`` (ABORTED) or a
        revoke made in that moment, which the running task polls for."""
        assert self.backend is not None
        try:
            (current,) = await self.backend.get([task_id])
        except Exception:  # unreadable now: STARTED is informative, write it
            current = None
        if current is not None and current.get("status") not in _OVERWRITABLE:
            return
        if task_id not in self._live:  # it ended during the read: its outcome is queued
            return
        self.settler.state(task_id, meta, self._reply_to(task_id))

    def _reply_to(self, task_id: str) -> str | None:
        return self.reply_to.get(task_id) if self.reply_to else None

    def _job(self, flight: Flight) -> Job:
        msg, task, delivery, config = flight.msg, flight.task, flight.delivery, self.config
        ctx = context_for(
            msg,
            hostname=config.hostname,
            delivery_info={
                "exchange": delivery.exchange,
                "routing_key": delivery.routing_key,
                "priority": msg.priority,
                "redelivered": delivery.redelivered,
            },
            properties=delivery.envelope.properties,
        )
        on_start = None
        if self._reports_started(flight):
            on_start = flight.began
            flight.tracked = True
            self.started.expect()
        return Job(
            payload=(task.name, ctx),
            time_limit=msg.time_limit or task.time_limit or config.time_limit,
            soft_time_limit=msg.soft_time_limit or task.soft_time_limit or config.soft_time_limit,
            on_start=on_start,
            guard=self._guard(flight),
        )

    def _guard(self, flight: Flight) -> Callable[[], bool]:
        """Whether the job may start: not once it was revoked while it waited for a slot
        (a prefetched task, as Celery checks it before running it); and only while the
        worker holds its message, so that a worker that was frozen or cut off past its
        lease (or whose channel died) does not run what another worker was given
        meanwhile. The lease counts only for late acks: a message acked as it was handed
        to the executor is this worker's to run, or it is lost."""
        config, task_id = self.config, flight.msg.id  # config.revoked is replaced as it syncs
        leases, delivery = self._leases, flight.delivery
        if leases is None or not flight.acks_late:
            return lambda: task_id not in config.revoked
        return lambda: task_id not in config.revoked and leases.holds(delivery) is True

    def _reports_started(self, flight: Flight) -> bool:
        """Whether a STARTED state is written if the task runs long enough."""
        if not self.keeps_states or flight.msg.ignore_result:
            return False
        tracked = flight.task.track_started
        return tracked if tracked is not None else self.config.track_started
