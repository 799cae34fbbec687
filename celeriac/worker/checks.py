"""The checks a delivery passes before its task runs, in this order.

1. Its message decodes, in an accepted content type; else it goes to the dead letters
   (``task_rejected`` is sent).
2. Its task is registered in this worker; else it goes to the dead letters, its result is
   recorded as a FAILURE with ``NotRegistered`` and ``task_unknown`` is sent, as Celery's.
3. It is neither revoked nor expired; else it is discarded (the conclusion records REVOKED).
4. Its ETA has come. A near one is waited for here; a far one (beyond
   ``worker_eta_hold_seconds``, put straight on the queue with its ``eta`` header by any
   client, Celery's or celeriac's) is moved into the broker's delayed store of its queue
   (``Transport.defer``, atomic with its ack), which keeps it until it is nearly due: worker
   memory stays bounded.
5. Its task's rate limit lets it start (it waits holding no pool slot).

The common case passes 3 to 5 at once, and :meth:`Checks.clear` says so synchronously:
only a delivery that must wait or be skipped goes through the awaited :meth:`Checks.wait`,
so a task that is due now costs no coroutine.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from celeriac import clock, signals, states
from celeriac.exceptions import MessageError, NotRegistered
from celeriac.protocol.message import TaskMessage, decode_task
from celeriac.protocol.results import make_meta
from celeriac.task import Task
from celeriac.transport import Delivery, Transport
from celeriac.worker.flight import Flight, HandlerConfig
from celeriac.worker.rate_limit import RateLimiter
from celeriac.worker.settle import Settler

__all__ = ["EXPIRED", "HANDED_BACK", "REVOKED", "Checks", "Rejection"]

logger = logging.getLogger("celeriac.worker")

REVOKED = "revoked"
EXPIRED = "expired"
HANDED_BACK = "handed back to the broker"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a delivery failed check 1 or 2; ``msg`` is set when only its task is unknown."""

    reason: str
    exc: Exception
    msg: TaskMessage | None = None


class Checks:
    """Decides whether, and when, the task of each delivery may run."""

    def __init__(
        self, app: Any, transport: Transport, settler: Settler, config: HandlerConfig
    ) -> None:
        self.app = app
        self.transport = transport
        self.settler = settler
        self.config = config
        self.rate_limiter = RateLimiter()
        self.consumer: Any = None
        """The sender of ``task_unknown`` and ``task_rejected`` (Celery's: its consumer)."""

    def decode(self, delivery: Delivery) -> tuple[TaskMessage, Task] | Rejection:
        """The delivery's message and task (checks 1 and 2), or why it is dead-lettered."""
        try:
            msg = decode_task(delivery.envelope, self.config.accept, self.config.max_message_size)
        except MessageError as exc:
            return Rejection(f"undecodable message: {exc}", exc)
        except Exception as exc:  # the decoder's own bug must not loop on this message
            logger.exception("unexpected error decoding message %s", delivery.tag)
            return Rejection(f"undecodable message: {type(exc).__name__}: {exc}", exc)
        task = self.app.tasks.get(msg.task)
        if task is None:
            reason = f"unregistered task {msg.task!r} (id {msg.id})"
            return Rejection(reason, NotRegistered(msg.task), msg)
        return msg, task

    async def dead_letter(self, delivery: Delivery, rejection: Rejection) -> None:
        """Set a delivery that failed check 1 or 2 aside, with the reason; an unknown task's
        result becomes a FAILURE (NotRegistered), as Celery records it."""
        logger.error(
            "Rejecting message %s to the dead-letter store: %s", delivery.tag, rejection.reason
        )
        await self.transport.dead_letter(delivery, rejection.reason)
        msg = rejection.msg
        if msg is None:
            signals.task_rejected.send(sender=self.consumer, message=delivery, exc=rejection.exc)
            return
        error = {
            "exc_type": "NotRegistered",
            "exc_message": [msg.task],
            "exc_module": "celery.exceptions",
        }
        if self.settler.backend is not None:
            meta = make_meta(msg.id, states.FAILURE, error)
            try:
                await self.settler.store(msg.id, meta, msg.reply_to)
            except Exception as exc:  # the message is safe in the dead letters already
                logger.warning("could not record task %s as not registered: %r", msg.id, exc)
        signals.task_unknown.send(
            sender=self.consumer, message=delivery, exc=rejection.exc, name=msg.task, id=msg.id
        )

    def clear(self, msg: TaskMessage, task: Task) -> bool:
        """Whether checks 3 to 5 pass right now with nothing to wait for (the common case)."""
        config = self.config
        if msg.id in config.revoked:
            return False
        if msg.eta is not None or msg.expires is not None:
            now = clock.wall()
            if msg.eta is not None and msg.eta.timestamp() > now:
                return False
            if msg.expires is not None and msg.expires.timestamp() <= now:
                return False
        return not (config.rate_limits and (task.rate_limit or config.default_rate_limit))

    async def wait(self, flight: Flight) -> str | None:
        """Wait through checks 3 to 5: None when the task may start now, else why it may not:
        :data:`REVOKED` or :data:`EXPIRED` (to be discarded), or :data:`HANDED_BACK` (the
        broker has it again and this delivery is acked)."""
        msg, task = flight.msg, flight.task
        reason = self.unwanted(msg)
        if reason is None and msg.eta is not None:
            delay = msg.eta.timestamp() - clock.wall()
            if delay > self.config.eta_hold_seconds and await self._hand_back(flight):
                return HANDED_BACK
            if delay > 0:
                await asyncio.sleep(delay)
                reason = self.unwanted(msg)  # it may have been revoked or expired meanwhile
        if reason is None and self.config.rate_limits:
            rate = task.rate_limit or self.config.default_rate_limit
            await self.rate_limiter.acquire(task.name, rate)
        return reason

    def defers(self, msg: TaskMessage) -> bool:
        """Whether the ETA is far enough that the delivery goes to the broker's delayed
        store (check 4) rather than waiting here; a revoked or expired one does not."""
        if msg.eta is None or self.unwanted(msg) is not None:
            return False
        return msg.eta.timestamp() - clock.wall() > self.config.eta_hold_seconds

    def unwanted(self, msg: TaskMessage) -> str | None:
        """:data:`REVOKED` or :data:`EXPIRED` when the task must not run (check 3), else None."""
        if msg.id in self.config.revoked:
            return REVOKED
        if msg.expires is not None and msg.expires.timestamp() <= clock.wall():
            return EXPIRED
        return None

    async def _hand_back(self, flight: Flight) -> bool:
        """Move the delivery into the broker's delayed store of its own queue until its ETA
        (:meth:`Transport.defer`: one atomic step, which also acks it, so the message is
        never both here and there). False when the broker could not take it: it is then
        held here (the worker would lose nothing either way)."""
        assert flight.msg.eta is not None
        try:
            await self.transport.defer(flight.delivery, flight.msg.eta.timestamp())
        except Exception as exc:  # e.g. the broker is unreachable past its retries
            logger.warning(
                "could not hand task %s back to the broker until its ETA (%s); holding it",
                flight.msg.id,
                exc,
            )
            return False
        logger.debug("task %s handed back to the broker until its ETA", flight.msg.id)
        return True
