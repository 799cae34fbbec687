"""The conclusion: what a task's outcome leaves behind, queued through the Settler.

Order matters for at-least-once: follow-ups are published before the result is written
and the result before the message is acked (:mod:`celeriac.worker.settle`), so a crash in
between runs the task again instead of losing its result or the rest of its workflow.

* **success**: a plain one (no chain, callback or chord) is concluded at once, from the
  executor's callback: its result and ack are queued together, with no coroutine. With a
  chain or callbacks, those are published first (their ids become the result's
  ``children``); a chord header's part is recorded once its result is written.
* **retry**: the message goes back to the broker with its ETA and one more retry; RETRY
  is recorded.
* **failure**: FAILURE is recorded, then the canvas is told (the chain's rest fails, chord
  parts are reported, errbacks run: :mod:`celeriac.worker.workflow`). A late-acked message
  is then acked, unless ``acks_on_failure`` / ``acks_on_timeout`` (the task's, else the
  ``task_acks_on_*`` settings) say no: a failed task's message is rejected without requeue,
  a timed-out one's requeued, as in Celery.
* **reject** (the task raised ``Reject``): the delivery is rejected, requeued if asked;
  one not requeued will never run again, so FAILURE is recorded first (as Celery does).
* **ignore** (the task raised ``Ignore``): acked, nothing recorded.
* **lost** (the job ended without an outcome): one that never started (the executor
  stopped) is requeued; one whose process died or hit its hard time limit fails with
  WorkerLostError or TimeLimitExceeded, unless the cold shutdown killed it or
  ``task_reject_on_worker_lost`` asks for a requeue.
* **revoked or expired** (found by the checks, never run): REVOKED is recorded and the
  canvas told, as for a failure but without errbacks.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Coroutine
from typing import Any

from celeriac import clock, signals, states
from celeriac.announce import announce_publish, announce_published
from celeriac.backends import Meta, ResultBackend
from celeriac.engines.options import delayed_delivery
from celeriac.exceptions import SerializationError, TimeLimitExceeded, WorkerLostError
from celeriac.protocol.message import TaskMessage, encode_task, safe_repr
from celeriac.protocol.results import exception_from_dict, exception_to_dict, make_meta
from celeriac.publishing import PublishRequest
from celeriac.routing import Route
from celeriac.trace import Outcome, context_for
from celeriac.transport import Delivery, Outgoing, Transport
from celeriac.utils.einfo import ExceptionInfo
from celeriac.worker.checks import EXPIRED
from celeriac.worker.executors.base import ExecutorStopped
from celeriac.worker.flight import Flight, HandlerConfig
from celeriac.worker.jsonlog import task_fields
from celeriac.worker.settle import Document, Settler
from celeriac.worker.workflow import Workflow

__all__ = ["Conclusion"]

logger = logging.getLogger("celeriac.worker")


class Conclusion:
    """Concludes each flight from its job's outcome (see the module docstring)."""

    def __init__(
        self,
        transport: Transport,
        backend: ResultBackend | None,
        settler: Settler,
        workflow: Workflow,
        config: HandlerConfig,
    ) -> None:
        self.transport = transport
        self.backend = backend
        self.settler = settler
        self.workflow = workflow
        self.config = config
        self.settling = 0
        """Outcomes being concluded by a coroutine (canvas, retries, failures, lost jobs)."""
        self.cold_shutdown = False
        """Set by a cold shutdown: the jobs it kills are unfinished, not failed."""

    def at_once(self, flight: Flight, ok: bool, value: Any) -> bool:
        """Conclude a plain success now (its result and ack queued); False if :meth:`later`
        must conclude this outcome."""
        if not ok or value.state != states.SUCCESS:
            return False
        msg = flight.msg
        if msg.chain or msg.callbacks or msg.chord:
            return False
        self._settle(flight, self._success_document(flight, value, None))
        return True

    def later(self, flight: Flight, ok: bool, value: Any) -> Coroutine[Any, Any, None]:
        """The coroutine that concludes any other outcome; it counts in :attr:`settling`
        from now on (the prefetch window makes room for it)."""
        self.settling += 1
        return self._later(flight, ok, value)

    async def _later(self, flight: Flight, ok: bool, value: Any) -> None:
        try:
            outcome = value if ok else self._lost(flight, value)
            if outcome is None:
                await self.transport.reject([flight.delivery], requeue=True)
            else:
                await self._conclude(flight, outcome)
        finally:
            self.settling -= 1

    async def discard(self, flight: Flight, reason: str) -> None:
        """A task that must not run (revoked or expired): REVOKED recorded, canvas told, acked."""
        msg = flight.msg
        logger.info("Discarding %s task %s[%s]", reason, msg.task, msg.id)
        error = {
            "exc_type": "TaskRevokedError",
            "exc_message": [reason],
            "exc_module": "celery.exceptions",
        }
        await self._record(flight, make_meta(msg.id, states.REVOKED, error))
        await self.workflow.after_revoked(msg, error)
        if flight.acks_late or flight.time_start is None:  # else acked as its job started
            self.settler.ack(flight.delivery)
        if signals.task_revoked.receivers:
            request = context_for(msg, hostname=self.config.hostname, delivery_info=None)
            signals.task_revoked.send(
                sender=flight.task,
                request=request,
                terminated=reason == "terminated",  # killed by a remote terminate
                signum=None,
                expired=reason == EXPIRED,
            )

    # outcomes ---------------------------------------------------------------------------
    def _lost(self, flight: Flight, exc: Any) -> Outcome | None:
        """The outcome of a job that ended without one; None when it is to be requeued."""
        if isinstance(exc, ExecutorStopped):
            return None  # shutting down before the job started: it never ran
        if isinstance(exc, SerializationError):
            # The job could not be handed to its pool (arguments nested too deeply to
            # pickle, say): it would fail alike on every redelivery, so it fails now, once.
            msg = flight.msg
            extra = task_fields(msg.id, msg.task, states.FAILURE)
            logger.error("Task %s[%s] cannot run: %s", msg.task, msg.id, exc, extra=extra)
        elif not isinstance(exc, TimeLimitExceeded | WorkerLostError):
            raise exc  # a bug in the executor's function: the handler requeues the delivery
        # A job killed by our cold shutdown is unfinished, not failed; so is one whose process
        # died when task_reject_on_worker_lost asks for that.
        if isinstance(exc, WorkerLostError) and (
            self.cold_shutdown or (self.rejects_on_worker_lost(flight) and flight.acks_late)
        ):
            msg = flight.msg
            logger.warning(
                "Task %s[%s] lost its process (%s); requeued",
                msg.task,
                msg.id,
                exc,
                extra=task_fields(msg.id, msg.task, "REQUEUED"),
            )
            return None
        return Outcome(
            state=states.FAILURE,
            value=exception_to_dict(exc),
            traceback=None,
            exc_repr=repr(exc),
            exception=exc,
        )

    async def _conclude(self, flight: Flight, outcome: Outcome) -> None:
        msg, state = flight.msg, outcome.state
        if state == states.SUCCESS:
            await self._succeeded(flight, outcome)
            return
        if state == states.REJECTED:
            logger.warning(
                "Task %s[%s] rejected itself: %s",
                msg.task,
                msg.id,
                outcome.exc_repr,
                extra=task_fields(msg.id, msg.task, state, runtime=outcome.runtime),
            )
            if not outcome.requeue:  # it will never run again: FAILURE, as Celery records
                await self._rejected_for_good(flight, outcome)
            await self.transport.reject([flight.delivery], requeue=outcome.requeue)
            return
        if state == states.RETRY:
            await self._retry(flight, outcome)
        elif state == states.IGNORED:
            extra = task_fields(msg.id, msg.task, state, runtime=outcome.runtime)
            logger.info("Task %s[%s] ignored", msg.task, msg.id, extra=extra)
        else:
            await self._failed(flight, outcome)
            if flight.acks_late and not self._acks_failure(flight, outcome):
                timed_out = _timed_out(outcome)
                await self.transport.reject([flight.delivery], requeue=timed_out)
                return
        if flight.acks_late:
            self.settler.ack(flight.delivery)

    def rejects_on_worker_lost(self, flight: Flight) -> bool:
        """Whether a task whose process died goes back to its queue (reject on worker lost)."""
        own = flight.task.reject_on_worker_lost
        return bool(self.config.reject_on_worker_lost if own is None else own)

    def _acks_failure(self, flight: Flight, outcome: Outcome) -> bool:
        """Whether a late-acked failure is acked (Celery's order of precedence)."""
        task, config = flight.task, self.config
        kind = "acks_on_timeout" if _timed_out(outcome) else "acks_on_failure"
        for value in (
            getattr(task, kind, None),
            getattr(config, kind),
            task.acks_on_failure_or_timeout,
            config.acks_on_failure_or_timeout,
        ):
            if value is not None:
                return bool(value)
        return True

    async def _succeeded(self, flight: Flight, outcome: Outcome) -> None:
        """A success with a canvas: follow-ups first, then as a plain success."""
        msg = flight.msg
        children = await self.workflow.on_success(msg, outcome.value)
        document = self._success_document(flight, outcome, children)
        if msg.chord is None:
            self._settle(flight, document)
            return
        # A chord header's part is recorded once its result is written, before the ack.
        if document is not None:
            task_id, meta = document
            await self.settler.store(task_id, meta, msg.reply_to)
        await self.workflow.after_success(msg, outcome.value)
        if flight.acks_late:
            self.settler.ack(flight.delivery)

    async def _failed(self, flight: Flight, outcome: Outcome) -> None:
        msg = flight.msg
        logger.error(
            "Task %s[%s] raised unexpected: %s\n%s",
            msg.task,
            msg.id,
            outcome.exc_repr,
            outcome.traceback or "",
            extra=task_fields(msg.id, msg.task, states.FAILURE, runtime=outcome.runtime),
        )
        meta = make_meta(
            msg.id,
            states.FAILURE,
            outcome.value,
            traceback=outcome.traceback,
            children=outcome.children,
            extra=self._extended(msg, flight.delivery),
        )
        await self._record(flight, meta)
        await self.workflow.after_failure(msg, outcome)

    async def _rejected_for_good(self, flight: Flight, outcome: Outcome) -> None:
        """``Reject(requeue=False)``: FAILURE with the Reject as its exception, the canvas
        told and ``task_failure`` sent (from the worker, as Celery sends it)."""
        msg = flight.msg
        # A pool process sends the exception back as its dict only.
        exc = outcome.exception or exception_from_dict(outcome.value)
        outcome = Outcome(**{**outcome.__dict__, "state": states.FAILURE})
        await self._failed(flight, outcome)
        signals.task_failure.send(
            sender=flight.task,
            task_id=msg.id,
            exception=exc,
            args=msg.args,
            kwargs=msg.kwargs,
            traceback=outcome.traceback,
            einfo=ExceptionInfo.from_exception(exc, outcome.traceback),
        )

    async def _retry(self, flight: Flight, outcome: Outcome) -> None:
        msg, delivery = flight.msg, flight.delivery
        msg.retries += 1
        msg.parent_id = msg.id  # as Celery does: a retry's parent is the task itself
        if outcome.retry_args is not None:
            msg.args = outcome.retry_args
        if outcome.retry_kwargs is not None:
            msg.kwargs = outcome.retry_kwargs
        eta = outcome.retry_eta or clock.wall()
        msg.eta = dt.datetime.fromtimestamp(eta, dt.UTC)
        serializer = _serializer_name(delivery)
        envelope = encode_task(msg, serializer, None)
        # Celery's retry is a publish: the same publish signals are sent.
        route = Route(delivery.exchange, delivery.routing_key, None)
        again = PublishRequest(msg, route, serializer)
        announce_publish(self.workflow.app, again, envelope)
        # As any publish: the eta header only (a worker defers it if far), unless the
        # app parks ETAs in the broker's delayed store itself (broker_delayed_delivery).
        parked = eta if delayed_delivery(self.workflow.app.conf) else None
        await self.transport.publish(
            [Outgoing(envelope, delivery.exchange, delivery.routing_key, parked)]
        )
        announce_published(again, envelope)
        logger.info(
            "Task %s[%s] retry: Retry in %.1fs: %s",
            msg.task,
            msg.id,
            max(0.0, eta - clock.wall()),
            outcome.exc_repr,
            extra=task_fields(msg.id, msg.task, states.RETRY, runtime=outcome.runtime),
        )
        extra = self._extended(msg, delivery)
        meta = make_meta(
            msg.id, states.RETRY, outcome.value, traceback=outcome.traceback, extra=extra
        )
        await self._record(flight, meta)

    # recording --------------------------------------------------------------------------
    def _success_document(
        self, flight: Flight, outcome: Outcome, children: list[Any] | None
    ) -> Document | None:
        """Log a success; its result document, or None when its result is not kept."""
        msg = flight.msg
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "Task %s[%s] succeeded in %.6fs: %s",
                msg.task,
                msg.id,
                outcome.runtime,
                safe_repr(outcome.value),
                extra=task_fields(msg.id, msg.task, states.SUCCESS, runtime=outcome.runtime),
            )
        if self.backend is None or msg.ignore_result:  # (only failures may be kept regardless)
            return None
        extra = self._extended(msg, flight.delivery)
        trail = [*(outcome.children or ()), *(children or ())]
        return msg.id, make_meta(msg.id, states.SUCCESS, outcome.value, children=trail, extra=extra)

    def _settle(self, flight: Flight, document: Document | None) -> None:
        """Queue the result with the ack (written in that order): the flight is concluded."""
        delivery = flight.delivery if flight.acks_late else None
        self.settler.settle(document, delivery, flight.msg.reply_to)

    async def _record(self, flight: Flight, meta: Meta) -> None:
        """Write a result document now (unless it is not kept); raises what the write raised."""
        if self.backend is None or self._ignores_result(flight, meta["status"]):
            return
        await self.settler.store(flight.msg.id, meta, flight.msg.reply_to)

    def _ignores_result(self, flight: Flight, status: str) -> bool:
        if not flight.msg.ignore_result:
            return False
        own = flight.task.store_errors_even_if_ignored
        keep_errors = self.config.store_errors_even_if_ignored if own is None else own
        return not (keep_errors and status in (states.FAILURE, states.RETRY))

    def _extended(self, msg: TaskMessage, delivery: Delivery) -> dict[str, Any] | None:
        extra: dict[str, Any] = {"parent_id": msg.parent_id, "group_id": msg.group}
        if self.config.result_extended:
            extra.update(
                name=msg.task,
                args=msg.args,
                kwargs=msg.kwargs,
                worker=self.config.hostname,
                retries=msg.retries,
                queue=delivery.routing_key or None,  # Celery's: the delivery's key
            )
            if msg.stamps:
                extra.update(msg.stamps, stamped_headers=list(msg.stamps))
        return extra


def _timed_out(outcome: Outcome) -> bool:
    """Whether a failure is a hard time limit (the worker killed the task)."""
    if outcome.exception is not None:
        return isinstance(outcome.exception, TimeLimitExceeded)
    value = outcome.value
    return isinstance(value, dict) and value.get("exc_type") == "TimeLimitExceeded"


def _serializer_name(delivery: Delivery) -> str:
    content_type = delivery.envelope.content_type
    return {"application/x-python-serialize": "pickle", "application/x-msgpack": "msgpack"}.get(
        content_type, "json"
    )
