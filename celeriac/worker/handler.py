"""Handle deliveries: decode, check, execute, record, follow the canvas, ack.

Order matters for at-least-once: the result is written before the message is
acked, so a crash in between re-runs the task instead of losing its result
(:mod:`celeriac.worker.settle`).

Two paths. The common case (a task due now, not revoked, no rate limit) is started
straight from :meth:`TaskHandler.receive` with the executor's callback API, and a
plain success with no canvas to follow is recorded from the executor's callback:
no coroutine, task or future per message. Everything else (dead letters, revokes,
ETAs, rate limits, retries, failures, chains, chords, rpc:// replies) runs as one
background coroutine per delivery, in the same order of steps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from celeriac import states
from celeriac.backends import Meta, ResultBackend
from celeriac.exceptions import MessageError, TimeLimitExceeded, WorkerLostError
from celeriac.protocol.message import TaskMessage, decode_task, encode_task, safe_repr
from celeriac.protocol.results import exception_to_dict, make_meta
from celeriac.protocol.serializers import Serializer
from celeriac.task import Task
from celeriac.trace import Outcome, context_for
from celeriac.transport import Delivery, Outgoing, Transport
from celeriac.worker.executors.base import Executor, ExecutorStopped, Job
from celeriac.worker.rate_limit import RateLimiter
from celeriac.worker.settle import Settler
from celeriac.worker.started import StartedNotes
from celeriac.worker.workflow import Workflow

__all__ = ["HandlerConfig", "TaskHandler"]

logger = logging.getLogger("celeriac.worker")

STARTED_AFTER = 0.05
"""Seconds a task runs before its STARTED state is written (shorter tasks go straight to
their final state: the write would cost a round trip on the result's critical path)."""


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
    rate_limits: bool = True
    default_rate_limit: str | float | None = None
    revoked: set[str] = field(default_factory=set)


class _Flight:
    """A delivery on the fast path, from start to its executor's callback."""

    __slots__ = ("acks_late", "delivery", "handler", "msg", "task", "tracked")

    def __init__(
        self,
        handler: TaskHandler,
        delivery: Delivery,
        msg: TaskMessage,
        task: Task,
        acks_late: bool,
    ) -> None:
        self.handler = handler
        self.delivery = delivery
        self.msg = msg
        self.task = task
        self.acks_late = acks_late
        self.tracked = False

    def began(self, pid: int) -> None:
        """The executor started the job (``Job.on_start``; in any thread)."""
        self.handler.started.begin(self.msg.id, pid)

    def done(self, ok: bool, value: Any) -> None:
        """The executor's callback (``Executor.run``)."""
        self.handler.finished(self, ok, value)


class TaskHandler:
    """Runs deliveries through the executors; one per worker."""

    def __init__(
        self,
        app: Any,
        transport: Transport,
        backend: ResultBackend | None,
        sync_executor: Executor,
        async_executor: Executor,
        config: HandlerConfig,
        result_serializer: Serializer,
    ) -> None:
        self.app = app
        self.transport = transport
        self.backend = backend
        self.sync_executor = sync_executor
        self.async_executor = async_executor
        self.config = config
        self.serializer = result_serializer
        self.reply_to: dict[str, str] = {}
        """reply_to of tasks in flight, for rpc:// results."""
        self.tracks_reply_to = hasattr(backend, "store_for")
        self.settler = Settler(
            transport,
            backend,
            # More results are on their way while deliveries are held (running or queued).
            busy=lambda: self.held > 0,
            reply_to=self.reply_to,
            progressed=lambda: self.wake_consumer(),
        )
        self.started = StartedNotes(self._write_started, after=STARTED_AFTER)
        self.held = 0
        """Deliveries received and not yet finished with (their result and ack queued)."""
        self.executing = 0
        """Jobs handed to an executor and not finished."""
        self.settling = 0
        """Tasks that have run and whose follow-ups (canvas, retries) are being written."""
        self.idle = asyncio.Event()
        self.idle.set()
        self._background: set[asyncio.Task[None]] = set()
        self.wake_consumer: Callable[[], None] = lambda: None
        """Called when a delivery is finished with: the consumer may fetch more."""
        self.processed = 0
        self.cold_shutdown = False
        self.rate_limiter = RateLimiter()
        self.workflow = Workflow(app, backend)

    # bookkeeping ------------------------------------------------------------------------
    def _hold(self) -> None:
        self.held += 1
        self.idle.clear()

    def _release(self) -> None:
        self.held -= 1
        if self.held == 0 and not self._background:
            self.idle.set()
        self.wake_consumer()

    def _in_background(self, delivery: Delivery, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` for ``delivery`` as a task; it releases the delivery when it ends."""
        task = asyncio.get_running_loop().create_task(self._guarded(delivery, coro))
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if self.held == 0 and not self._background:
            self.idle.set()

    async def _guarded(self, delivery: Delivery, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except Exception:
            logger.exception("internal error handling delivery %s; requeueing it", delivery.tag)
            await self.transport.reject([delivery], requeue=True)
        finally:
            self._release()

    def sink_from_any_thread(self) -> Callable[[str, Meta], None]:
        """A callable for ``update_state`` in pool threads and async tasks of this process."""
        loop = asyncio.get_running_loop()

        def sink(task_id: str, meta: Meta) -> None:
            loop.call_soon_threadsafe(self.task_state, task_id, meta)

        return sink

    def task_state(self, task_id: str, meta: Meta) -> None:
        """A running task's own ``update_state``: it supersedes a STARTED not yet written."""
        self.started.superseded(task_id)
        self.settler.state(task_id, meta)

    def _write_started(self, task_id: str, pid: int) -> None:
        meta = make_meta(task_id, states.STARTED, {"pid": pid, "hostname": self.config.hostname})
        self.settler.state(task_id, meta)

    async def drain(self) -> None:
        """Wait until every queued result and ack is written."""
        self.started.cancel()
        await self.settler.drain()

    # entry point ------------------------------------------------------------------------
    def receive(self, delivery: Delivery) -> None:
        """Take one fetched delivery and see it through; never raises."""
        self._hold()
        try:
            self._receive(delivery)
        except Exception:
            logger.exception("internal error handling delivery %s; requeueing it", delivery.tag)
            self._in_background(delivery, self.transport.reject([delivery], requeue=True))

    def _receive(self, delivery: Delivery) -> None:
        try:
            msg = decode_task(delivery.envelope, self.config.accept)
        except MessageError as exc:
            reason = f"undecodable message: {exc}"
            self._in_background(delivery, self._dead_letter(delivery, reason))
            return
        task = self.app.tasks.get(msg.task)
        if task is None:
            reason = f"unregistered task {msg.task!r} (id {msg.id})"
            self._in_background(delivery, self._dead_letter(delivery, reason))
            return
        logger.info("Task %s[%s] received", msg.task, msg.id)
        if self.tracks_reply_to or self._needs_checks(msg, task):
            self._in_background(delivery, self._handle(delivery, msg, task))
        else:
            self._start(delivery, msg, task)

    def _needs_checks(self, msg: TaskMessage, task: Task) -> bool:
        """Whether the message must wait or be skipped (revoked, expired, ETA, rate limit)."""
        if msg.id in self.config.revoked:
            return True
        if msg.eta is not None or msg.expires is not None:
            now = time.time()
            if msg.eta is not None and msg.eta.timestamp() > now:
                return True
            if msg.expires is not None and msg.expires.timestamp() <= now:
                return True
        return self.config.rate_limits and bool(task.rate_limit or self.config.default_rate_limit)

    async def _handle(self, delivery: Delivery, msg: TaskMessage, task: Task) -> None:
        if self.tracks_reply_to and msg.reply_to:
            self.reply_to[msg.id] = msg.reply_to
        try:
            await self._run_checked(delivery, msg, task)
        finally:
            self.reply_to.pop(msg.id, None)

    async def _run_checked(self, delivery: Delivery, msg: TaskMessage, task: Task) -> None:
        if await self._skip_if_revoked_or_expired(delivery, msg, task):
            return
        if msg.eta is not None and not await self._wait_for_eta(delivery, msg, task):
            return
        await self._execute(delivery, msg, task)

    async def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        logger.error("Rejecting message %s to the dead-letter store: %s", delivery.tag, reason)
        await self.transport.dead_letter(delivery, reason)

    async def _skip_if_revoked_or_expired(
        self, delivery: Delivery, msg: TaskMessage, task: Task
    ) -> bool:
        reason = None
        if msg.id in self.config.revoked:
            reason = "revoked"
        elif msg.expires is not None and msg.expires.timestamp() <= time.time():
            reason = "expired"
        if reason is None:
            return False
        logger.info("Discarding %s task %s[%s]", reason, msg.task, msg.id)
        error = {
            "exc_type": "TaskRevokedError",
            "exc_message": [reason],
            "exc_module": "celery.exceptions",
        }
        await self._record(msg, task, make_meta(msg.id, states.REVOKED, error))
        await self.workflow.after_revoked(msg, error)
        self.settler.ack(delivery)
        return True

    async def _wait_for_eta(self, delivery: Delivery, msg: TaskMessage, task: Task) -> bool:
        """Hold a task until its ETA if that is near; otherwise hand it back to the broker."""
        assert msg.eta is not None
        delay = msg.eta.timestamp() - time.time()
        if delay <= 0:
            return True
        if delay > self.config.eta_hold_seconds:
            # Far ETAs (e.g. from a Celery client) wait in the broker, not in worker memory.
            outgoing = Outgoing(
                delivery.envelope, delivery.exchange, delivery.routing_key, msg.eta.timestamp()
            )
            await self.transport.publish([outgoing])
            self.settler.ack(delivery)
            return False
        await asyncio.sleep(delay)
        return not await self._skip_if_revoked_or_expired(delivery, msg, task)

    # execution --------------------------------------------------------------------------
    def _acks_late(self, task: Task) -> bool:
        return task.acks_late if task.acks_late is not None else self.config.acks_late

    def _job_for(
        self, delivery: Delivery, msg: TaskMessage, task: Task, flight: _Flight | None = None
    ) -> Job:
        ctx = context_for(
            msg,
            hostname=self.config.hostname,
            delivery_info={
                "exchange": delivery.exchange,
                "routing_key": delivery.routing_key,
                "priority": msg.priority,
                "redelivered": delivery.redelivered,
            },
        )
        hard = msg.time_limit or task.time_limit or self.config.time_limit
        soft = msg.soft_time_limit or task.soft_time_limit or self.config.soft_time_limit
        on_start = None
        if self._reports_started(msg, task):
            on_start = flight.began if flight is not None else _Begin(self, msg.id)
            self.started.expect()
        return Job(
            payload=(task.name, ctx),
            time_limit=hard,
            soft_time_limit=soft,
            on_start=on_start,
        )

    def _reports_started(self, msg: TaskMessage, task: Task) -> bool:
        """Whether a STARTED state is written if the task runs long enough."""
        if self.backend is None or msg.ignore_result:
            return False
        return task.track_started if task.track_started is not None else self.config.track_started

    def _start(self, delivery: Delivery, msg: TaskMessage, task: Task) -> None:
        """The fast path: hand the job to its executor with a callback."""
        acks_late = self._acks_late(task)
        if not acks_late:
            self.settler.ack(delivery)
        flight = _Flight(self, delivery, msg, task, acks_late)
        executor = self.async_executor if task.is_async else self.sync_executor
        job = self._job_for(delivery, msg, task, flight)
        flight.tracked = job.on_start is not None
        self.executing += 1
        executor.run(job, flight.done)

    def finished(self, flight: _Flight, ok: bool, value: Any) -> None:
        """The executor's callback for a fast-path job (in the loop's thread)."""
        self.executing -= 1
        msg = flight.msg
        if flight.tracked:
            self.started.finished(msg.id)
        if not ok:
            coro = self._after_lost(flight.delivery, msg, flight.task, value, flight.acks_late)
            self._in_background(flight.delivery, coro)
            return
        self.processed += 1
        if value.state == states.SUCCESS and not (msg.chain or msg.callbacks or msg.chord):
            try:
                self._record_success(flight, value)
            except Exception:
                logger.exception("internal error recording task %s; requeueing it", msg.id)
                coro = self.transport.reject([flight.delivery], requeue=True)
                self._in_background(flight.delivery, coro)
                return
            self._release()
            return
        self.settling += 1
        self._in_background(flight.delivery, self._conclude_settling(flight, value))

    def _record_success(self, flight: _Flight, outcome: Outcome) -> None:
        """A plain success: log it and queue its result and ack (written in that order)."""
        msg, task = flight.msg, flight.task
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "Task %s[%s] succeeded in %.6fs: %s",
                msg.task,
                msg.id,
                outcome.runtime,
                safe_repr(outcome.value),
            )
        document = None
        if self.backend is not None and not self._ignores_result(msg, task, states.SUCCESS):
            meta = make_meta(msg.id, states.SUCCESS, outcome.value, extra=self._extended(msg))
            document = (msg.id, meta)
        self.settler.settle(document, flight.delivery if flight.acks_late else None)

    async def _conclude_settling(self, flight: _Flight, outcome: Outcome) -> None:
        try:
            await self._conclude(
                flight.delivery, flight.msg, flight.task, outcome, flight.acks_late
            )
        finally:
            self.settling -= 1

    async def _after_lost(
        self, delivery: Delivery, msg: TaskMessage, task: Task, exc: Any, acks_late: bool
    ) -> None:
        """A fast-path job that ended without an outcome (stopped, killed, time limit)."""
        if isinstance(exc, ExecutorStopped):
            await self.transport.reject([delivery], requeue=True)
            return
        if not isinstance(exc, TimeLimitExceeded | WorkerLostError):
            raise exc  # a bug in the executor's function: _guarded requeues the delivery
        if self._requeue_lost(exc, acks_late):
            logger.warning("Task %s[%s] lost its process (%s); requeued", msg.task, msg.id, exc)
            await self.transport.reject([delivery], requeue=True)
            return
        self.processed += 1
        self.settling += 1
        try:
            await self._conclude(delivery, msg, task, _infrastructure_failure(exc), acks_late)
        finally:
            self.settling -= 1

    async def _execute(self, delivery: Delivery, msg: TaskMessage, task: Task) -> None:
        """The slow path's execution: after the checks, wait for the rate limit, run, conclude."""
        acks_late = self._acks_late(task)
        if not acks_late:
            self.settler.ack(delivery)
        executor = self.async_executor if task.is_async else self.sync_executor
        if self.config.rate_limits:
            await self.rate_limiter.acquire(
                task.name, task.rate_limit or self.config.default_rate_limit
            )
        self.executing += 1
        job = self._job_for(delivery, msg, task)
        try:
            outcome: Outcome = await executor.submit(job)
        except ExecutorStopped:
            # Shutting down before the job started: it never ran, so give it back.
            await self.transport.reject([delivery], requeue=True)
            return
        except (TimeLimitExceeded, WorkerLostError) as exc:
            if self._requeue_lost(exc, acks_late):
                logger.warning("Task %s[%s] lost its process (%s); requeued", msg.task, msg.id, exc)
                await self.transport.reject([delivery], requeue=True)
                return
            outcome = _infrastructure_failure(exc)
        finally:
            self.executing -= 1
            if job.on_start is not None:
                self.started.finished(msg.id)
        self.processed += 1
        self.settling += 1
        self.wake_consumer()
        try:
            await self._conclude(delivery, msg, task, outcome, acks_late)
        finally:
            self.settling -= 1

    def _requeue_lost(self, exc: BaseException, acks_late: bool) -> bool:
        """A task killed by our cold shutdown is unfinished, not failed; so is one whose
        process died when ``task_reject_on_worker_lost`` asks for that."""
        if not isinstance(exc, WorkerLostError):
            return False
        return self.cold_shutdown or (self.config.reject_on_worker_lost and acks_late)

    # recording --------------------------------------------------------------------------
    async def _record(self, msg: TaskMessage, task: Task | None, meta: Meta) -> None:
        if self.backend is None or self._ignores_result(msg, task, meta["status"]):
            return
        await self.settler.store(msg.id, meta)

    def _ignores_result(self, msg: TaskMessage, task: Task | None, status: str) -> bool:
        if not msg.ignore_result:
            return False
        keep_errors = bool(getattr(task, "store_errors_even_if_ignored", False))
        return not (keep_errors and status == states.FAILURE)

    async def _conclude(
        self, delivery: Delivery, msg: TaskMessage, task: Task, outcome: Outcome, acks_late: bool
    ) -> None:
        if outcome.state == states.SUCCESS:
            await self._succeeded(msg, task, outcome)
        elif outcome.state == states.RETRY:
            await self._retry(delivery, msg, task, outcome)
        elif outcome.state == states.REJECTED:
            logger.warning("Task %s[%s] rejected itself: %s", msg.task, msg.id, outcome.exc_repr)
            await self.transport.reject([delivery], requeue=outcome.requeue)
            return
        elif outcome.state == states.IGNORED:
            logger.info("Task %s[%s] ignored", msg.task, msg.id)
        else:
            await self._failed(msg, task, outcome)
        if acks_late:
            self.settler.ack(delivery)

    async def _succeeded(self, msg: TaskMessage, task: Task, outcome: Outcome) -> None:
        children = await self.workflow.on_success(msg, outcome.value)
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "Task %s[%s] succeeded in %.6fs: %s",
                msg.task,
                msg.id,
                outcome.runtime,
                safe_repr(outcome.value),
            )
        meta = make_meta(
            msg.id, states.SUCCESS, outcome.value, children=children, extra=self._extended(msg)
        )
        await self._record(msg, task, meta)
        await self.workflow.after_success(msg, outcome.value)

    async def _failed(self, msg: TaskMessage, task: Task, outcome: Outcome) -> None:
        logger.error(
            "Task %s[%s] raised unexpected: %s\n%s",
            msg.task,
            msg.id,
            outcome.exc_repr,
            outcome.traceback or "",
        )
        meta = make_meta(
            msg.id,
            states.FAILURE,
            outcome.value,
            traceback=outcome.traceback,
            extra=self._extended(msg),
        )
        await self._record(msg, task, meta)
        await self.workflow.after_failure(msg, outcome)

    async def _retry(
        self, delivery: Delivery, msg: TaskMessage, task: Task, outcome: Outcome
    ) -> None:
        msg.retries += 1
        msg.parent_id = msg.id  # as Celery does: a retry's parent is the task itself
        if outcome.retry_args is not None:
            msg.args = outcome.retry_args
        if outcome.retry_kwargs is not None:
            msg.kwargs = outcome.retry_kwargs
        eta = outcome.retry_eta or time.time()
        msg.eta = _from_epoch(eta)
        envelope = encode_task(msg, _serializer_name(delivery), None)
        await self.transport.publish(
            [Outgoing(envelope, delivery.exchange, delivery.routing_key, eta)]
        )
        logger.info(
            "Task %s[%s] retry: Retry in %.1fs: %s",
            msg.task,
            msg.id,
            max(0.0, eta - time.time()),
            outcome.exc_repr,
        )
        await self._record(
            msg, task, make_meta(msg.id, states.RETRY, outcome.value, traceback=outcome.traceback)
        )

    def _extended(self, msg: TaskMessage) -> dict[str, Any] | None:
        extra: dict[str, Any] = {"parent_id": msg.parent_id, "group_id": msg.group}
        if self.config.result_extended:
            extra.update(
                name=msg.task,
                args=msg.args,
                kwargs=msg.kwargs,
                worker=self.config.hostname,
                retries=msg.retries,
                queue=None,
            )
        return extra


class _Begin:
    """``Job.on_start`` of a slow-path job: note that task ``task_id`` began."""

    __slots__ = ("handler", "task_id")

    def __init__(self, handler: TaskHandler, task_id: str) -> None:
        self.handler = handler
        self.task_id = task_id

    def __call__(self, pid: int) -> None:
        self.handler.started.begin(self.task_id, pid)


def _infrastructure_failure(exc: BaseException) -> Outcome:
    return Outcome(
        state=states.FAILURE,
        value=exception_to_dict(exc),
        traceback=None,
        exc_repr=repr(exc),
        exception=exc,
    )


def _from_epoch(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _serializer_name(delivery: Delivery) -> str:
    content_type = delivery.envelope.content_type
    return {"application/x-python-serialize": "pickle", "application/x-msgpack": "msgpack"}.get(
        content_type, "json"
    )
