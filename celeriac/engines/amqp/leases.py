"""Leases: how a delivery stays with a live worker longer than RabbitMQ's consumer_timeout.

RabbitMQ closes a channel when one of its deliveries stays unacked longer than
``consumer_timeout`` (30 min by default), and every delivery on that channel goes back to its
queue: a 40-minute task would be run again while it is still running, and its neighbours too.
Nothing in AMQP 0-9-1 renews an unacked delivery, so a delivery held for ``consumer_timeout / 2``
is moved off the channel:

1. declare a lease queue ``celeriac.lease.<uuid>`` (durable) with ``x-message-ttl =
   lease_timeout``, ``x-dead-letter-exchange ""`` and ``x-dead-letter-routing-key = <the
   delivery's queue>``, and ``x-expires`` (twice the TTL plus a minute) to clean up after it;
2. in one transaction on the consuming channel, publish a copy of the message to the lease
   queue and ack the original. The copy and the ack commit together, so there is always
   exactly one copy: on the channel until the commit, in the lease queue after it (RabbitMQ
   makes transactions atomic for the client; only a broker crash in the middle of a commit
   could split them);
3. every ``lease_timeout / 2`` the holder renews the lease: in one transaction on a mover
   channel it takes the copy with ``basic.get``, publishes it again to the same queue (a fresh
   TTL) and acks the old one;
4. when the worker settles the delivery, ack and drop delete the lease queue; requeue and
   dead-letter move the copy to its queue (or the dead-letter queue) in one transaction first.

If the worker dies or hangs, renewals stop and the copy expires back to its queue within
``lease_timeout`` (``redelivered`` is then true): neither lost nor run twice while its worker
lives. A worker whose event loop stalls for more than ``lease_timeout / 2`` can lose a lease;
that is logged. ``close()`` hands leased deliveries back at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.engines.amqp.channels import LEASE_PREFIX, Action, Held
from celeriac.engines.amqp.connection import (
    AbstractConnection,
    Basic,
    Channel,
    Session,
    properties_for,
)

__all__ = ["REDELIVERED_HEADER", "Leases", "TxChannel"]

logger = logging.getLogger("celeriac.engines.amqp.broker")

REDELIVERED_HEADER = "x-celeriac-redelivered"


class Leases:
    """Takes, renews and ends leases (see the module docstring)."""

    def __init__(self, ttl: float, session: Session) -> None:
        self.ttl = ttl
        self._session = session
        self._mover_channel: TxChannel | None = None
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """Open a new mover channel on the next use (after a reconnect)."""
        self._mover_channel = None

    async def _mover(self) -> TxChannel:
        """The transactional channel that moves lease copies."""
        if self._mover_channel is None or not self._mover_channel.alive:
            self._mover_channel = await TxChannel.open(await self._session.connection())
        return self._mover_channel

    def _arguments(self, queue: str) -> dict[str, Any]:
        ttl_ms = max(1, round(self.ttl * 1000))
        return {
            "x-message-ttl": ttl_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": queue,
            "x-expires": 2 * ttl_ms + 60_000,
        }

    async def take(self, held: Held) -> bool:
        """Move ``held`` from its channel into a new lease queue; False if it was settled."""
        consumer = held.channel
        if consumer is None or held.lease is not None:
            return False
        name = f"{LEASE_PREFIX}{uuid.uuid4().hex}"
        admin = await self._session.admin()
        await admin.queue_declare(
            name, durable=True, arguments=self._arguments(held.delivery.queue)
        )
        properties = properties_for(held.delivery.envelope)
        if not await consumer.move(held, "", name, properties, lease=name):
            await admin.queue_delete(name)
            return False
        held.lease_since = time.monotonic()
        logger.debug("delivery %s leased in %s", held.delivery.tag, name)
        return True

    def due(self, held: Held, now: float) -> bool:
        """Whether the lease of ``held`` should be renewed now."""
        return held.lease is not None and now - held.lease_since >= self.ttl / 2

    async def renew(self, held: Held) -> bool:
        """Give the lease copy a fresh TTL; False (and a warning) when it already expired."""
        async with self._lock:
            name = held.lease
            if name is None:
                return False
            mover = await self._mover()
            if await mover.transfer(name, "", name):
                held.lease_since = time.monotonic()
                return True
        logger.warning(
            "lease of delivery %s (queue %s) expired before it was renewed; the message went "
            "back to its queue and may run again",
            held.delivery.tag,
            held.delivery.queue,
        )
        held.lease_since = float("inf")  # stop renewing; settling deletes the empty queue
        return False

    async def settle(self, held: Held, action: Action) -> None:
        """Ack/drop (delete the copy) or requeue (move it back) a leased delivery."""
        if action == "requeue":
            await self.move_out(held, held.delivery.queue, {REDELIVERED_HEADER: True})
        else:
            await self.move_out(held, None, None)

    async def move_out(
        self, held: Held, queue: str | None, headers: Mapping[str, Any] | None
    ) -> bool:
        """Move the lease copy to ``queue`` (None: nowhere) and delete the lease queue."""
        async with self._lock:
            name, held.lease = held.lease, None
            if name is None:
                return False
            moved = True
            if queue is not None:
                mover = await self._mover()
                moved = await mover.transfer(name, "", queue, set_headers=headers)
            deleted = await (await self._session.admin()).queue_delete(name)
        if queue is None:
            moved = bool(deleted and deleted.message_count)
        if not moved:
            logger.warning(
                "lease of delivery %s had expired: its message went back to %s earlier",
                held.delivery.tag,
                held.delivery.queue,
            )
        return moved


class TxChannel:
    """A transactional channel that moves single messages taken with ``basic.get``."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.lock = asyncio.Lock()

    @classmethod
    async def open(cls, connection: AbstractConnection) -> TxChannel:
        """Open a channel in transaction mode."""
        channel = await connection.channel(publisher_confirms=False)
        assert isinstance(channel, Channel)
        await channel.tx_select()
        return cls(channel)

    @property
    def alive(self) -> bool:
        """False once the channel closed."""
        return not self.channel.is_closed

    async def transfer(
        self,
        source: str,
        exchange: str,
        routing_key: str,
        set_headers: Mapping[str, Any] | None = None,
        drop_headers: Sequence[str] = (),
    ) -> bool:
        """Move the first message of ``source`` elsewhere (atomically); False if it is empty."""
        async with self.lock:
            message = await self.channel.basic_get(source)
            if not isinstance(message.delivery, Basic.GetOk):
                return False
            properties = message.header.properties
            headers = {k: v for k, v in (properties.headers or {}).items() if k not in drop_headers}
            headers.update(set_headers or {})
            properties.headers = headers
            await self.channel.basic_publish(
                message.body, exchange=exchange, routing_key=routing_key, properties=properties
            )
            await self.channel.basic_ack(int(message.delivery.delivery_tag or 0))
            await self.channel.tx_commit()
        return True

    async def close(self) -> None:
        """Close the channel (an open transaction is rolled back)."""
        if not self.channel.is_closed:
            await self.channel.close()
