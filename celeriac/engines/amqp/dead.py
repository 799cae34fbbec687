"""Dead letters of the AMQP transport: one durable queue, read without consuming.

``dead_letter`` moves the message (a transaction: copy published, original acked) to the
durable classic queue ``celeriac.dead`` (option ``dead_letter_queue``) with the headers
``x-celeriac-dead-id``, ``-reason``, ``-queue``, ``-exchange``, ``-routing-key`` and ``-at``
(epoch milliseconds); a leased delivery is moved from its lease queue the same way.
``list_dead`` browses: it takes up to ``limit`` messages with ``basic.get`` on a channel of
its own and closes that channel, which puts them all back in their places (oldest first).
``requeue_dead`` walks the queue on a transactional channel: a chosen message is published to
the default exchange with its original queue as routing key, without the dead-letter headers,
and acked, committed together; the others go back in place when the channel closes. Two
processes browsing at the same moment each miss what the other holds for those milliseconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from celeriac.engines.amqp.channels import Held
from celeriac.engines.amqp.connection import (
    AbstractConnection,
    Basic,
    Channel,
    DeliveredMessage,
    envelope_of,
    properties_for,
)
from celeriac.engines.amqp.leases import Leases
from celeriac.transport.base import DeadLetter

__all__ = ["DEAD_HEADERS", "DeadLetters"]

_H = "x-celeriac-dead-"
DEAD_HEADERS = tuple(_H + k for k in ("id", "reason", "queue", "exchange", "routing-key", "at"))


class DeadLetters:
    """The dead-letter queue: what goes in, browsing, putting back."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._declared = False

    def reset(self) -> None:
        """Check the queue again on the next use (after a reconnect)."""
        self._declared = False

    async def ensure(self, admin: Channel) -> None:
        """Declare the dead-letter queue once per connection."""
        if not self._declared:
            await admin.queue_declare(self.queue, durable=True)
            self._declared = True

    @staticmethod
    def headers(held: Held, reason: str) -> dict[str, Any]:
        """The headers recording why and from where ``held`` died."""
        delivery = held.delivery
        values = (uuid.uuid4().hex, reason, delivery.queue, delivery.exchange,
                  delivery.routing_key, round(time.time() * 1000))  # fmt: skip
        return dict(zip(DEAD_HEADERS, values, strict=True))

    async def bury(
        self, held: Held, headers: dict[str, Any], admin: Channel, leases: Leases
    ) -> None:
        """Move ``held`` (from its channel or its lease) to the dead-letter queue, atomically."""
        await self.ensure(admin)
        if held.lease is None and held.channel is not None:
            properties = properties_for(held.delivery.envelope, headers)
            if await held.channel.move(held, "", self.queue, properties):
                return
        if held.lease is not None:  # leased before, or while we were waiting for the channel
            await leases.move_out(held, self.queue, headers)

    async def browse(
        self, connection: AbstractConnection, admin: Channel, limit: int
    ) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first, left in the queue."""
        await self.ensure(admin)
        channel = await connection.channel(publisher_confirms=False)
        found: list[DeadLetter] = []
        try:
            while len(found) < limit:
                message = await channel.basic_get(self.queue)
                if not isinstance(message.delivery, Basic.GetOk):
                    break
                found.append(_dead_letter(message))
        finally:
            await channel.close()  # unacked: all go back, in their places
        return found

    async def requeue(
        self,
        connection: AbstractConnection,
        admin: Channel,
        ids: Sequence[str] | None,
        ensure_queue: Callable[[str], Awaitable[object]],
    ) -> int:
        """Put the chosen dead letters (all when ``ids`` is None) back; return how many."""
        await self.ensure(admin)
        wanted = None if ids is None else set(ids)
        channel = await connection.channel(publisher_confirms=False)
        moved = 0
        try:
            await channel.tx_select()
            while wanted is None or moved < len(wanted):
                message = await channel.basic_get(self.queue)
                if not isinstance(message.delivery, Basic.GetOk):
                    break
                headers = message.header.properties.headers or {}
                if wanted is not None and headers.get(_H + "id") not in wanted:
                    continue
                await self._put_back(channel, message, ensure_queue)
                moved += 1
        finally:
            await channel.close()
        return moved

    @staticmethod
    async def _put_back(
        channel: Any, message: DeliveredMessage, ensure_queue: Callable[[str], Awaitable[object]]
    ) -> None:
        properties = message.header.properties
        headers = dict(properties.headers or {})
        queue = str(headers.get(_H + "queue") or "")
        for key in DEAD_HEADERS:
            headers.pop(key, None)
        properties.headers = headers
        await ensure_queue(queue)
        await channel.basic_publish(
            message.body, exchange="", routing_key=queue, properties=properties
        )
        assert isinstance(message.delivery, Basic.GetOk)
        await channel.basic_ack(int(message.delivery.delivery_tag or 0))
        await channel.tx_commit()


def _dead_letter(message: DeliveredMessage) -> DeadLetter:
    headers: dict[str, Any] = dict(message.header.properties.headers or {})
    return DeadLetter(
        id=str(headers.get(_H + "id") or ""),
        queue=str(headers.get(_H + "queue") or ""),
        reason=str(headers.get(_H + "reason") or ""),
        dead_at=int(headers.get(_H + "at") or 0) / 1000,
        envelope=envelope_of(message),
    )
