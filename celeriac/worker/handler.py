"""Handle one delivery: decode, check, execute, record, follow the canvas, ack.

Order matters for at-least-once: the result is written before the message is
acked, so a crash in between re-runs the task instead of losing its result.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac import states
from celeriac.backends import Meta, ResultBackend
from celeriac.exceptions import MessageError, SerializationError, TimeLimitExceeded, WorkerLostError
from celeriac.protocol.message import TaskMessage, decode_task, encode_task, safe_repr
from celeriac.protocol.results import exception_to_dict, make_meta
from celeriac.protocol.serializers import Serializer
from celeriac.task import Task
from celeriac.trace import Outcome, context_for
from celeriac.transport import Delivery, Outgoing, Transport
from celeriac.worker.batcher import Batcher
from celeriac.worker.executors.base import Executor, ExecutorStopped, Job
from celeriac.worker.rate_limit import RateLimiter
from celeriac.worker.workflow import Workflow

__all__ = ["HandlerConfig", "TaskHandler"]

logger = logging.getLogger("celeriac.worker")

LINGER = 0.0005
"""Seconds a result or ack flush waits for more items while other tasks are still running."""

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
        self.acks: Batcher[Delivery] = Batcher(self._flush_acks, linger=self._linger_acks)
        self.results: Batcher[tuple[str, Meta]] = Batcher(
            self._flush_results, linger=self._linger_results
        )
        self.executing = 0
        """Jobs submitted to an executor and not finished."""
        self.settling = 0
        """Tasks that have run and wait for their result and ack to be queued."""
        self._started: dict[str, asyncio.TimerHandle] = {}
        """Pending STARTED writes, by task id."""
        self.wake_consumer: Callable[[], None] = lambda: None
        """Called when a task moves to settling: the consumer may fetch more."""
        self.processed = 0
        self.cold_shutdown = False
        self.reply_to: dict[str, str] = {}
        """reply_to of tasks in flight, for rpc:// results."""
        self.tracks_reply_to = hasattr(backend, "store_for")
        self.rate_limiter = RateLimiter()
        self.workflow = Workflow(app, backend)

    # batched I/O ------------------------------------------------------------------------
    def _linger_acks(self, items: Sequence[Delivery]) -> float:
        # Only while other jobs run: an idle worker's single ack goes out at once.
        return LINGER if self.executing > 0 else 0.0

    def _linger_results(self, items: Sequence[tuple[str, Meta]]) -> float:
        # A batch of only STARTED/progress documents goes out at once: holding it would
        # make the task's final result queue behind it. (Holding STARTED back is safe
        # anyway: every update_state of a running task, pool processes included, is
        # written through this same batch, after it.)
        if self.executing == 0 or not any(m["status"] in states.READY_STATES for _, m in items):
            return 0.0
        return LINGER

    async def _flush_acks(self, deliveries: Sequence[Delivery]) -> None:
        try:
            await self.transport.ack(deliveries)
        except Exception:
            logger.exception(
                "ack of %d deliveries failed; they will be redelivered", len(deliveries)
            )

    async def _flush_results(self, items: Sequence[tuple[str, Meta]]) -> None:
        if self.backend is None:
            return
        latest = dict(items)  # a later state of the same task replaces an earlier one in the batch
        store_for = getattr(self.backend, "store_for", None)
        if store_for is not None:
            # rpc:// results go to each task's own reply queue.
            by_reply: dict[str, list[tuple[str, Meta]]] = {}
            for task_id, meta in latest.items():
                by_reply.setdefault(self.reply_to.get(task_id, ""), []).append((task_id, meta))
            for reply_to, part in by_reply.items():
                await store_for(reply_to, part)
            return
        try:
            await self.backend.store(list(latest.items()))
        except SerializationError:
            await self._store_one_by_one(list(latest.items()))

    async def _store_one_by_one(self, items: list[tuple[str, Meta]]) -> None:
        assert self.backend is not None
        for task_id, meta in items:
            try:
                await self.backend.store([(task_id, meta)])
            except SerializationError as exc:
                logger.error("Task %s: result cannot be serialized: %s", task_id, exc)
                failure = make_meta(
                    task_id,
                    states.FAILURE,
                    {
                        "exc_type": "EncodeError",
                        "exc_message": [f"result cannot be serialized: {exc}"],
                        "exc_module": "celeriac.exceptions",
                    },
                )
                await self.backend.store([(task_id, failure)])

    async def _record(self, msg: TaskMessage, task: Task | None, meta: Meta) -> None:
        if self.backend is None or self._ignores_result(msg, task, meta["status"]):
            return
        await self.results.put((msg.id, meta))

    def _ignores_result(self, msg: TaskMessage, task: Task | None, status: str) -> bool:
        if not msg.ignore_result:
            return False
        keep_errors = bool(getattr(task, "store_errors_even_if_ignored", False))
        return not (keep_errors and status == states.FAILURE)

    def sink_from_any_thread(self) -> Callable[[str, Meta], None]:
        """A callable for ``update_state`` in pool threads and async tasks of this process."""
        loop = asyncio.get_running_loop()

        def sink(task_id: str, meta: Meta) -> None:
            loop.call_soon_threadsafe(self.task_state, task_id, meta)

        return sink

    def task_state(self, task_id: str, meta: Meta) -> None:
        """A running task's own ``update_state``: it supersedes a STARTED not yet written."""
        self._forget_started(task_id)
        self.results.add((task_id, meta))

    def _forget_started(self, task_id: str) -> None:
        timer = self._started.pop(task_id, None)
        if timer is not None:
            timer.cancel()

    # entry point ------------------------------------------------------------------------
    async def handle(self, delivery: Delivery) -> None:
        """Process one delivery completely; never raises."""
        try:
            await self._handle(delivery)
        except Exception:
            logger.exception("internal error handling delivery %s; requeueing it", delivery.tag)
            await self.transport.reject([delivery], requeue=True)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            msg = decode_task(delivery.envelope, self.config.accept)
        except MessageError as exc:
            await self._dead_letter(delivery, f"undecodable message: {exc}")
            return
        task = self.app.tasks.get(msg.task)
        if task is None:
            await self._dead_letter(delivery, f"unregistered task {msg.task!r} (id {msg.id})")
            return
        logger.info("Task %s[%s] received", msg.task, msg.id)
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
        self.acks.add(delivery)
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
            self.acks.add(delivery)
            return False
        await asyncio.sleep(delay)
        return not await self._skip_if_revoked_or_expired(delivery, msg, task)

    # execution --------------------------------------------------------------------------
    def _job_for(self, delivery: Delivery, msg: TaskMessage, task: Task) -> Job:
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
        started = self._on_started(msg, task) if self._tracks_started(task) else None
        return Job(
            payload=(task.name, ctx.as_dict()),
            time_limit=hard,
            soft_time_limit=soft,
            on_start=started,
        )

    def _tracks_started(self, task: Task) -> bool:
        return task.track_started if task.track_started is not None else self.config.track_started

    def _on_started(self, msg: TaskMessage, task: Task) -> Any:
        if self.backend is None or msg.ignore_result:
            return None

        def write(pid: int) -> None:
            self._started.pop(msg.id, None)
            meta = make_meta(msg.id, states.STARTED, {"pid": pid, "hostname": self.config.hostname})
            self.results.add((msg.id, meta))

        def started(pid: int) -> None:
            loop = asyncio.get_running_loop()
            self._started[msg.id] = loop.call_later(STARTED_AFTER, write, pid)

        return started

    async def _execute(self, delivery: Delivery, msg: TaskMessage, task: Task) -> None:
        acks_late = task.acks_late if task.acks_late is not None else self.config.acks_late
        if not acks_late:
            self.acks.add(delivery)
        executor = self.async_executor if task.is_async else self.sync_executor
        if self.config.rate_limits:
            await self.rate_limiter.acquire(
                task.name, task.rate_limit or self.config.default_rate_limit
            )
        self.executing += 1
        try:
            outcome: Outcome = await executor.submit(self._job_for(delivery, msg, task))
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
            self._forget_started(msg.id)
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
            self.acks.add(delivery)

    async def _succeeded(self, msg: TaskMessage, task: Task, outcome: Outcome) -> None:
        children = await self.workflow.on_success(msg, outcome.value)
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
