"""A worker's mailbox: receive control requests, run the command, send the reply.

It runs beside the consume loop, as one asyncio task with a subscription of its own
(:mod:`celeriac.control.fanout`), so control traffic never shares a fetch with tasks.
Requests addressed to other workers (``destination``, ``pattern``/``matcher``) are
skipped. Replies are published through the worker's transport to the request's
``reply_to`` (Celery's direct exchange ``reply.celery.pidbox``).

Bad input: a request that does not parse or names an unknown command is logged (at
warning level the first time each problem is seen, at debug level after that) and
dropped, or answered with ``{"error": ...}`` when the sender waits for a reply. A
command that raises is answered with ``{"error": repr(exc)}``, as kombu does. The
mailbox itself never stops the worker.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celeriac.control import wire
from celeriac.control.fanout import Subscription, SubscriptionSpec, subscribe
from celeriac.control.panel import COMMANDS, Node, WorkerSide
from celeriac.protocol.envelope import Envelope
from celeriac.reconnect import Outage
from celeriac.transport import Outgoing, Transport

__all__ = ["Mailbox", "mailbox_spec"]

logger = logging.getLogger("celeriac.worker.control")

RECEIVE_TIMEOUT = 1.0
"""Seconds each receive waits before the loop looks at the stop flag again."""

MAX_REMEMBERED_PROBLEMS = 100


def mailbox_spec(names: wire.MailboxNames, hostname: str, conf: Any) -> SubscriptionSpec:
    """The worker's subscription: its node queue on the mailbox's fanout exchange, with
    Celery's ``control_queue_expires`` and ``control_queue_ttl`` as queue arguments."""
    arguments: dict[str, Any] = {}
    if conf["control_queue_expires"]:
        arguments["x-expires"] = int(float(conf["control_queue_expires"]) * 1000)
    if conf["control_queue_ttl"]:
        arguments["x-message-ttl"] = int(float(conf["control_queue_ttl"]) * 1000)
    return SubscriptionSpec(
        exchange=names.exchange, queue=names.node_queue(hostname), queue_arguments=arguments
    )


class Mailbox:
    """Answers control requests for one worker."""

    def __init__(self, worker: WorkerSide, transport: Transport, *, namespace: str) -> None:
        self.worker = worker
        self.transport = transport
        self.names = wire.MailboxNames(namespace)
        self.clock = wire.Clock()
        self.node = Node(worker, lambda: self.clock.value)
        self._problems: set[str] = set()
        self._subscription: Subscription | None = None
        self.outage = Outage(logger, f"control: {worker.hostname}'s mailbox")
        """The mailbox's outages (the broker away), each logged once."""

    async def open(self, url: str, options: dict[str, Any]) -> None:
        """Subscribe to the mailbox's exchange."""
        spec = mailbox_spec(self.names, self.worker.hostname, self.worker.app.conf)
        subscription = subscribe(url, options, spec)
        await subscription.open()
        self._subscription = subscription

    async def serve(self, stopping: asyncio.Event) -> None:
        """Answer requests until ``stopping`` is set; then close the subscription."""
        subscription = self._subscription
        if subscription is None:
            raise RuntimeError("mailbox not opened")
        try:
            while not stopping.is_set():
                try:
                    envelopes = await subscription.receive(RECEIVE_TIMEOUT)
                except Exception as exc:
                    # the broker is away: said once, retried until it is back
                    self.outage.failed(exc)
                    logger.debug("control: receive failed", exc_info=True)
                    await asyncio.sleep(RECEIVE_TIMEOUT)
                    continue
                self.outage.ok()
                for envelope in envelopes:
                    await self.handle(envelope)
        finally:
            await subscription.close()

    async def handle(self, envelope: Envelope) -> Any:
        """Run one request; return the answer (None when not for this worker or dropped)."""
        try:
            request = wire.decode_request(envelope)
            if not wire.matches(self.worker.hostname, request):
                return None
        except ValueError as exc:
            self._problem(f"dropped a control message: {exc}")
            return None
        self.clock.adjust(request.clock)
        answer = await self._dispatch(request)
        if request.wants_reply and request.method != "shutdown":
            await self._reply(request, answer)
        return answer

    async def _dispatch(self, request: wire.Request) -> Any:
        command = COMMANDS.get(request.method)
        if command is None:
            self._problem(f"unknown control command {request.method!r}")
            return {"error": f"unknown control command {request.method!r}"}
        logger.debug("control: %s(%s)", request.method, request.arguments)
        try:
            return await command.handler(self.node, **request.arguments)
        except Exception as exc:
            logger.exception("control command %s failed", request.method)
            return {"error": repr(exc)}

    async def _reply(self, request: wire.Request, answer: Any) -> None:
        assert request.reply_to is not None and request.ticket is not None
        envelope = wire.encode_reply(
            self.worker.hostname, answer, request.ticket, self.clock.forward()
        )
        outgoing = Outgoing(
            envelope,
            exchange=request.reply_to["exchange"],
            routing_key=request.reply_to["routing_key"],
            optional=True,  # the client may have stopped waiting
        )
        try:
            await self.transport.publish([outgoing])
        except Exception as exc:
            logger.warning("control: could not reply to %s: %s", request.method, exc)

    def _problem(self, text: str) -> None:
        """Log a bad request: loudly the first time this problem is seen."""
        if text in self._problems:
            logger.debug("control: %s", text)
            return
        if len(self._problems) < MAX_REMEMBERED_PROBLEMS:
            self._problems.add(text)
        logger.warning("control: %s", text)
