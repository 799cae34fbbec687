"""The task handler: every delivery goes through the checks, the run and the conclusion.

One path, in three parts, each in its own module:

1. the checks before a task runs (:mod:`celeriac.worker.checks`): decode, unknown task,
   revoked, expired, ETA, rate limit;
2. the run (:mod:`celeriac.worker.run`): the job handed to its executor with a callback,
   time limits, STARTED notes;
3. the conclusion (:mod:`celeriac.worker.conclude`): success, retry, failure, reject,
   ignore, lost process, canvas follow-ups; result and ack queued through the Settler
   (:mod:`celeriac.worker.settle`), which writes the result before the ack.

The common case costs no coroutine, asyncio task or future: a task that passes the checks
at once is started from :meth:`TaskHandler.receive`, and a plain success is concluded from
the executor's callback. Only a step that must wait (a dead letter, an ETA, a rate limit,
a revoke, a canvas, a retry, a failure) runs as a background coroutine for its delivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

from celeriac import signals, states
from celeriac.backends import Meta, ResultBackend
from celeriac.exceptions import TimeLimitExceeded, WorkerLostError
from celeriac.transport import Delivery, Transport
from celeriac.worker.checks import HANDED_BACK, REVOKED, Checks, Rejection
from celeriac.worker.conclude import Conclusion
from celeriac.worker.events import WorkerEvents
from celeriac.worker.executors.base import Executor, ExecutorStopped, NotStarted
from celeriac.worker.flight import Flight, HandlerConfig
from celeriac.worker.jsonlog import task_fields
from celeriac.worker.request import Request
from celeriac.worker.run import Runner
from celeriac.worker.settle import Settler
from celeriac.worker.workflow import Workflow

__all__ = ["TaskHandler"]

logger = logging.getLogger("celeriac.worker")


class TaskHandler:
    """Sees each delivery through to its ack, and counts those it holds; one per worker."""

    def __init__(
        self,
        app: Any,
        transport: Transport,
        backend: ResultBackend | None,
        sync_executor: Executor,
        async_executor: Executor,
        config: HandlerConfig,
    ) -> None:
        self.app = app
        self.transport = transport
        self.backend = backend
        self.config = config
        self.settler = Settler(
            transport,
            backend,
            # More results are on their way while deliveries are held (running or queued).
            busy=lambda: self.held > 0,
            progressed=lambda: self.wake_consumer(),
        )
        self.checks = Checks(app, transport, self.settler, config)
        self.checks.consumer = self
        self.run = Runner(sync_executor, async_executor, self.settler, config, backend)
        workflow = Workflow(app, backend)
        self.conclusion = Conclusion(transport, backend, self.settler, workflow, config)
        self.held = 0
        """Deliveries received and not yet finished with (their result and ack queued)."""
        self.processed = 0
        """Jobs whose outcome came back since the worker started (heartbeats report it)."""
        self.events: WorkerEvents | None = None
        """The worker's events, when its broker carries events."""
        self.idle = asyncio.Event()
        self.idle.set()
        self.wake_consumer: Callable[[], None] = lambda: None
        """Called when the window has room again: the consumer may fetch more."""
        self.lost_reason: Callable[[str], str | None] | None = None
        """Why a task id is known to have died with its process, for a redelivered message
        (:class:`~celeriac.worker.slots.SlotBoard`); None where nothing is recorded."""
        self.observe_runtime: Callable[[float], None] | None = None
        """Told how long each sync task ran (the adaptive prefetch window sizes itself by it)."""
        self._background: set[asyncio.Task[None]] = set()
        self.flights: dict[str, Flight] = {}
        """Decoded deliveries not finished with, by task id (what remote control inspects)."""
        self.totals: Counter[str] = Counter()
        """Tasks run to an outcome since start, by name (``inspect stats``)."""
        # Each flight's callbacks, bound once.
        self._done = self._finished
        self._begin = self.run.started.begin

    @property
    def executing(self) -> int:
        """Jobs handed to an executor and not finished."""
        return self.run.executing

    @property
    def settling(self) -> int:
        """Tasks that have run and whose conclusion (canvas, retries...) is being written."""
        return self.conclusion.settling

    # entry point ------------------------------------------------------------------------
    def receive(self, delivery: Delivery) -> None:
        """Take one fetched delivery and see it through; never raises."""
        self._hold()
        try:
            self._receive(delivery)
        except Exception as exc:
            # Whatever fails here fails again for the same message: requeueing it would
            # loop, so it is set aside alone, with the cause, and the batch goes on.
            logger.exception("internal error handling delivery %s", delivery.tag)
            reason = f"internal error handling it: {type(exc).__name__}: {exc}"
            rejection = Rejection(reason, exc)
            self._in_background(delivery, self.checks.dead_letter(delivery, rejection))

    def _receive(self, delivery: Delivery) -> None:
        decoded = self.checks.decode(delivery)
        if isinstance(decoded, Rejection):
            self._in_background(delivery, self.checks.dead_letter(delivery, decoded))
            return
        msg, task = decoded
        acks_late = task.acks_late if task.acks_late is not None else self.config.acks_late
        flight = Flight(delivery, msg, task, acks_late, self._done, self._begin)
        self.flights[msg.id] = flight
        if self.checks.defers(msg):
            # Bound for the broker's delayed store: it is received when it comes back due,
            # once, as a Celery worker receives it once.
            self._in_background(delivery, self._checked(flight, announced=False))
            return
        self._announce(flight)
        if self.checks.clear(msg, task):
            self._start(flight)
        else:
            self._in_background(delivery, self._checked(flight))

    def _announce(self, flight: Flight) -> None:
        """Log, send ``task-received`` and ``task_received``: the task is this worker's."""
        msg, task = flight.msg, flight.task
        extra = task_fields(msg.id, msg.task, states.RECEIVED)
        logger.info("Task %s[%s] received", msg.task, msg.id, extra=extra)
        events = self.events
        if events is not None and events.tasks:
            events.task_received(msg, task)
        if signals.task_received.receivers and self.checks.unwanted(msg) is None:
            signals.task_received.send(sender=self, request=Request(flight, self.config.hostname))

    async def _checked(self, flight: Flight, announced: bool = True) -> None:
        """Wait through the checks; then run the task, or discard it."""
        reason = await self.checks.wait(flight)
        if not announced and reason != HANDED_BACK:
            self._announce(flight)  # kept here after all (the broker did not take it)
        if reason is not None:
            self._forget(flight)
        if reason is None:
            self._start(flight)
            # The job holds the delivery now (its callback lets go); this step lets go of its own.
            self._hold()
        elif reason != HANDED_BACK:
            events = self.events
            if events is not None and events.tasks:
                events.task_revoked(flight.msg, flight.task, reason)
            await self.conclusion.discard(flight, reason)

    def _start(self, flight: Flight) -> None:
        if flight.delivery.redelivered and self.lost_reason is not None and self._lost(flight):
            return
        events = self.events
        if events is not None and events.tasks:
            events.task_started(flight.msg, flight.task)
        self.run.start(flight)

    def _lost(self, flight: Flight) -> bool:
        """A redelivered task whose process died running it fails now with WorkerLostError,
        as prefork records it, instead of running again (and perhaps crashing again);
        unless ``task_reject_on_worker_lost`` asks for it to run again."""
        assert self.lost_reason is not None
        why = self.lost_reason(flight.msg.id)
        if why is None or (self.conclusion.rejects_on_worker_lost(flight) and flight.acks_late):
            return False
        msg = flight.msg
        logger.error(
            "Task %s[%s] was running in a process that died (%s): recorded as WorkerLostError, "
            "not run again",
            msg.task,
            msg.id,
            why,
            extra=task_fields(msg.id, msg.task, states.FAILURE),
        )
        self.run.fail_unstarted(flight, WorkerLostError(f"Worker exited prematurely: {why}."))
        return True

    def _finished(self, flight: Flight, ok: bool, value: Any) -> None:
        """A job's outcome (the executor's callback): conclude it now, or in the background."""
        self.run.ended(flight)
        self._forget(flight)
        if self.observe_runtime is not None and not flight.task.is_async:
            _observe(self.observe_runtime, flight, ok, value)
        self.totals[flight.task.name] += 1
        self.processed += 1
        if not ok and isinstance(value, WorkerLostError) and flight.msg.id in self.config.revoked:
            # Killed by a remote ``terminate``, or revoked while it waited for a slot (its
            # guard kept it from starting): REVOKED, as Celery records it.
            reason = REVOKED if isinstance(value, NotStarted) else "terminated"
            self._in_background(flight.delivery, self.conclusion.discard(flight, reason))
            return
        events = self.events
        if events is not None and events.tasks:
            self._outcome_event(events, flight, ok, value)
        try:
            if self.conclusion.at_once(flight, ok, value):
                self._release()
                return
        except Exception:
            logger.exception("internal error recording task %s; requeueing it", flight.msg.id)
            self._in_background(flight.delivery, self._requeue(flight.delivery))
            return
        self._in_background(flight.delivery, self.conclusion.later(flight, ok, value))
        self.wake_consumer()  # a concluding task leaves room in the window

    @staticmethod
    def _outcome_event(events: WorkerEvents, flight: Flight, ok: bool, value: Any) -> None:
        if ok:
            events.task_outcome(flight.msg, flight.task, value)
        elif isinstance(value, TimeLimitExceeded | WorkerLostError):
            events.task_failed(flight.msg, repr(value), None)

    async def _requeue(self, delivery: Delivery) -> None:
        await self.transport.reject([delivery], requeue=True)

    # what running tasks report ----------------------------------------------------------
    def sink_from_any_thread(self) -> Callable[[str, Meta], None]:
        """A callable for ``update_state`` in pool threads and async tasks of this process."""
        loop = asyncio.get_running_loop()

        def sink(task_id: str, meta: Meta) -> None:
            loop.call_soon_threadsafe(self.task_state, task_id, meta)

        return sink

    def task_state(self, task_id: str, meta: Meta) -> None:
        """A running task's own ``update_state`` (in the loop's thread)."""
        self.run.task_state(task_id, meta)

    async def drain(self) -> None:
        """Wait until every queued result and ack is written."""
        self.run.started.cancel()
        await self.settler.drain()

    # bookkeeping ------------------------------------------------------------------------
    def _forget(self, flight: Flight) -> None:
        if self.flights.get(flight.msg.id) is flight:
            del self.flights[flight.msg.id]

    def _hold(self) -> None:
        self.held += 1
        self.idle.clear()

    def _release(self) -> None:
        self.held -= 1
        if self.held == 0 and not self._background:
            self.idle.set()
        self.wake_consumer()

    def _in_background(self, delivery: Delivery, step: Coroutine[Any, Any, None]) -> None:
        """Run ``step`` for ``delivery`` as a task; the delivery is released when it ends."""
        task = asyncio.get_running_loop().create_task(self._guarded(delivery, step))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if self.held == 0 and not self._background:
            self.idle.set()

    async def _guarded(self, delivery: Delivery, step: Coroutine[Any, Any, None]) -> None:
        try:
            await step
        except Exception:
            logger.exception("internal error handling delivery %s; requeueing it", delivery.tag)
            await self._requeue(delivery)
        finally:
            self._release()


def _observe(observe: Callable[[float], None], flight: Flight, ok: bool, value: Any) -> None:
    """Report the job's run time: the task's own (an Outcome's), else the time since it was
    handed to the pool (killed, timed out: an over-estimate, which only shrinks the window).
    A job that never started tells nothing."""
    if ok:
        observe(value.runtime)
    elif flight.time_start is not None and not isinstance(value, ExecutorStopped):
        observe(time.time() - flight.time_start)
