"""Events on RabbitMQ: Celery's topic exchange ``celeryev`` (SPEC §4.1, §6.1).

Event messages are published on the exchange (declared topic and durable when missing,
as Celery does) with the event's routing key and ``delivery_mode`` 1. A receiver
declares its own queue ``<event_queue_prefix>.<uuid>`` as Celery's does (auto-delete,
exclusive unless ``event_queue_exclusive`` is false, durable if ``event_queue_durable``,
``x-message-ttl`` from ``event_queue_ttl`` and ``x-expires`` from
``event_queue_expires``), binds it with its binding key and consumes it without acks.
Connections come from :class:`~celeriac.engines.amqp.connection.Session`, reopened after
a loss; a receiver whose connection dropped subscribes again on its next wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.engines.amqp.connection import (
    TRANSIENT_ERRORS,
    AMQPOptions,
    DeliveredMessage,
    Session,
    envelope_of,
    properties_for,
)
from celeriac.events.bus import EventChannel, Published
from celeriac.protocol.envelope import Envelope
from celeriac.reconnect import Outage

__all__ = ["AMQPEventBus", "AMQPSubscription"]


logger = logging.getLogger("celeriac.events")


class AMQPSubscription:
    """One receiver's queue, bound to the event exchange."""

    def __init__(self, bus: AMQPEventBus, binding: str) -> None:
        self._bus = bus
        self._binding = binding
        self._role = f"events-{uuid.uuid4().hex[:12]}"
        self.queue = f"{bus.channel.queue_prefix}.{uuid.uuid4()}"
        self._inbox: asyncio.Queue[Envelope] = asyncio.Queue()
        self._channel: Any = None
        self.outage = Outage(logger, "events: subscription")
        """The subscription's outages, each logged once, and its end."""

    async def open(self) -> None:
        """Declare, bind and consume the queue (again after a lost connection)."""
        spec = self._bus.channel
        channel = await self._bus.session.channel(self._role)
        arguments: dict[str, Any] = {}
        if spec.queue_ttl is not None:
            arguments["x-message-ttl"] = int(spec.queue_ttl * 1000)
        if spec.queue_expires is not None:
            arguments["x-expires"] = int(spec.queue_expires * 1000)
        await self._bus.declare_exchange()
        await channel.queue_declare(
            self.queue,
            durable=spec.queue_durable,
            exclusive=spec.queue_exclusive and not spec.queue_durable,
            auto_delete=not spec.queue_durable,
            arguments=arguments,
        )
        await channel.queue_bind(self.queue, spec.exchange, routing_key=self._binding)
        await channel.basic_consume(self.queue, self._on_message, no_ack=True)
        self._channel = channel

    async def _on_message(self, message: DeliveredMessage) -> None:
        self._inbox.put_nowait(envelope_of(message))

    async def receive(self, timeout: float) -> list[Envelope]:
        """The messages that arrived, waiting up to ``timeout`` s for one.

        A lost connection is logged once and costs the wait; the next call declares and
        consumes a queue again.
        """
        if self._channel is None or self._channel.is_closed:
            try:
                await self.open()
            except TRANSIENT_ERRORS as exc:
                self.outage.failed(exc)  # subscribed again on the next call
                await asyncio.sleep(min(timeout, 1.0))
                return []
            self.outage.ok()
        try:
            # Not wait_for: on 3.11 it returns the item and drops a cancel that comes as
            # the item does, and the dashboard's feed, stopped so, received for ever.
            async with asyncio.timeout(timeout):
                first = await self._inbox.get()
        except TimeoutError:
            return []
        found = [first]
        while not self._inbox.empty():
            found.append(self._inbox.get_nowait())
        return found

    async def close(self) -> None:
        """Close the channel (the broker deletes the auto-delete queue)."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception:  # the connection is going away anyway
                pass


class AMQPEventBus:
    """The event exchange of one RabbitMQ vhost."""

    def __init__(self, url: str, options: Mapping[str, Any], channel: EventChannel) -> None:
        self.url = url
        self.channel = channel
        self.session = Session(
            url, AMQPOptions.from_options(options), f"celeriac-events-{os.getpid()}", self._fresh
        )
        self._declared = False

    async def _fresh(self) -> None:
        self._declared = False

    async def declare_exchange(self) -> None:
        """Declare the topic exchange once per connection."""
        if self._declared:
            return
        admin = await self.session.admin()
        await admin.exchange_declare(self.channel.exchange, exchange_type="topic", durable=True)
        self._declared = True

    async def publish(self, messages: Sequence[Published]) -> None:
        """Publish every message (no confirms: events are fire and forget)."""
        if not messages:
            return

        async def send() -> None:
            await self.declare_exchange()
            channel = await self.session.channel("events")
            for message in messages:
                await channel.basic_publish(
                    message.envelope.body,
                    exchange=self.channel.exchange,
                    routing_key=message.routing_key,
                    properties=properties_for(message.envelope),
                    wait=False,
                )

        await self.session.retrying(send)

    async def subscribe(self, binding: str = "#") -> AMQPSubscription:
        """A new queue bound with ``binding``."""
        subscription = AMQPSubscription(self, binding)
        await subscription.open()
        return subscription

    async def close(self) -> None:
        """Close the connection."""
        await self.session.close()
