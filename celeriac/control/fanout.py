"""Receiving broadcasts: one subscriber's side of a fanout exchange, on every engine.

Broadcasting needs nothing new: :meth:`Transport.publish` to a fanout exchange already
reaches every queue bound to it (AMQP, SQLite, memory) and, on Redis, ``PUBLISH``es on
kombu's channel. Receiving differs by engine, so it has this small interface:

* :class:`QueueSubscription` (memory, SQLite, RabbitMQ): a queue of the subscriber's
  own, bound to the exchange, fetched and acked through a transport of its own (so it
  never shares a fetch with the task consumer);
* ``celeriac.engines.redis.control.RedisSubscription``: kombu's pub/sub channel, since
  Celery's Redis clients broadcast only there.

The remote-control mailbox (``<host>.celery.pidbox`` on ``celery.pidbox``) uses it;
so can an event receiver (``celeryev`` with a routing-key pattern).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from celeriac.engines import engine_for, load_class
from celeriac.masking import mask_url
from celeriac.protocol.envelope import Envelope
from celeriac.reconnect import Outage
from celeriac.transport import QueueSpec, Transport, transport_from_url

__all__ = ["QueueSubscription", "Subscription", "SubscriptionSpec", "subscribe"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubscriptionSpec:
    """What to receive: broadcasts on ``exchange`` (with ``routing_key``, ``#``/``*``
    patterns allowed where the engine routes by key) into the subscriber's ``queue``.

    ``queue_arguments`` go to the queue's declaration where queues exist (RabbitMQ's
    ``x-expires``, ``x-message-ttl``).
    """

    exchange: str
    queue: str
    routing_key: str = ""
    exchange_type: str = "fanout"
    queue_arguments: dict[str, Any] = field(default_factory=dict)


class Subscription(Protocol):
    """Broadcasts on one exchange, for one subscriber."""

    async def open(self) -> None:
        """Start receiving (messages broadcast before this may be missed)."""

    async def receive(self, timeout: float) -> list[Envelope]:
        """What arrived, waiting up to ``timeout`` s; empty on timeout or a lost connection
        (logged; the next call reconnects)."""

    async def close(self) -> None:
        """Stop receiving and release the connection; idempotent."""


class QueueSubscription:
    """A queue bound to the exchange, on a transport instance of its own."""

    def __init__(self, url: str, options: Mapping[str, Any], spec: SubscriptionSpec) -> None:
        self.spec = spec
        self._transport: Transport = transport_from_url(url, dict(options))
        self.outage = Outage(logger, f"subscription to {spec.exchange} at {mask_url(url)}")

    @property
    def transport(self) -> Transport:
        """The subscription's own transport (replies may be published through it)."""
        return self._transport

    async def open(self) -> None:
        """Connect and declare the subscriber's queue and binding."""
        spec = self.spec
        await self._transport.connect()
        await self._transport.declare(
            [
                QueueSpec(
                    name=spec.queue,
                    exchange=spec.exchange,
                    exchange_type=spec.exchange_type,
                    routing_key=spec.routing_key,
                    durable=False,
                    # as kombu declares a mailbox queue: gone with its last consumer
                    auto_delete=True,
                    queue_arguments=dict(spec.queue_arguments),
                )
            ]
        )

    async def receive(self, timeout: float) -> list[Envelope]:
        """Fetch and ack what waits in the queue."""
        try:
            deliveries = await self._transport.fetch([self.spec.queue], limit=100, timeout=timeout)
            if deliveries:
                await self._transport.ack(deliveries)
        except (ConnectionError, OSError) as exc:
            self.outage.failed(exc)  # logged once; the transport reconnects on the next call
            return []
        self.outage.ok()
        return [d.envelope for d in deliveries]

    async def close(self) -> None:
        """Close the transport."""
        await self._transport.close()


def subscribe(url: str, options: Mapping[str, Any], spec: SubscriptionSpec) -> Subscription:
    """The subscription for the broker at ``url`` (not opened yet)."""
    engine = engine_for(url)
    path = engine.path("subscriber") if engine is not None else None
    if path is None:
        return QueueSubscription(url, options, spec)
    factory = load_class(path)
    subscription: Subscription = factory(url, options, spec)
    return subscription
