"""Persisted revokes on AMQP: a RabbitMQ stream every transport instance reads in full.

``revoke`` appends ``{"ids": [...], "expires": <epoch>}`` to the stream queue
``celeriac.revoked`` (option ``revoked_queue``; ``x-queue-type: stream``, ``x-max-age`` from
the option ``revoke_retention``, default 30 days, small segments so old ones can go).
Reading a stream does not consume it, so every worker, including one started later, sees every
revoke. Each transport instance keeps one stream consumer from the first offset (after a
reconnect: from the offset after the last one it saw) and an in-memory map id -> expiry, so
``revoked()`` is a dictionary read. A stream has no end-of-stream signal, so on its first call
after (re)subscribing, ``revoked()`` appends a marker record and waits until the consumer reads
it back: every revoke confirmed before that moment has been seen. Expiry is applied on read;
revokes older than the retention disappear with their segment.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

from celeriac.engines.amqp.connection import AbstractConnection, Basic, Channel, DeliveredMessage

__all__ = ["Revokes"]

logger = logging.getLogger("celeriac.engines.amqp.broker")

_SYNC_TIMEOUT = 10.0
_PREFETCH = 1000


class Revokes:
    """Writes revokes to the stream and mirrors the stream in memory."""

    def __init__(self, queue: str, retention: str) -> None:
        self.queue = queue
        self.retention = retention
        self._expiry: dict[str, float] = {}
        self._channel: Channel | None = None
        self._next_offset: int | None = None
        self._markers: dict[str, asyncio.Future[None]] = {}
        self._synced = False
        self._declared = False
        self._lock = asyncio.Lock()

    def reset(self) -> None:
        """After a reconnect: subscribe again and re-check the queue."""
        self._channel = None
        self._synced = False
        self._declared = False

    async def ensure_declared(self, admin: Channel) -> None:
        """Declare the stream once per connection."""
        if self._declared:
            return
        arguments: dict[str, Any] = {
            "x-queue-type": "stream",
            "x-max-age": self.retention,
            "x-stream-max-segment-size-bytes": 1_000_000,
        }
        await admin.queue_declare(self.queue, durable=True, arguments=arguments)
        self._declared = True

    async def add(self, publisher: Channel, task_ids: Sequence[str], expires: float) -> None:
        """Append one revoke record (confirmed) and remember it locally at once."""
        await self._append(publisher, {"ids": list(task_ids), "expires": float(expires)})
        self._remember(task_ids, expires)

    async def current(
        self, connection: AbstractConnection, admin: Channel, publisher: Channel
    ) -> set[str]:
        """Every revoked id whose revoke has not expired."""
        async with self._lock:
            await self._subscribe(connection, admin)
            if not self._synced:
                await self._sync(publisher)
        now = time.time()
        for task_id in [t for t, exp in self._expiry.items() if exp <= now]:
            del self._expiry[task_id]
        return set(self._expiry)

    async def close(self) -> None:
        """Stop reading the stream."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()

    async def _subscribe(self, connection: AbstractConnection, admin: Channel) -> None:
        if self._channel is not None and not self._channel.is_closed:
            return
        await self.ensure_declared(admin)
        channel = await connection.channel(publisher_confirms=False)
        assert isinstance(channel, Channel)
        await channel.basic_qos(prefetch_count=_PREFETCH)  # streams require a prefetch
        offset: Any = "first" if self._next_offset is None else self._next_offset
        await channel.basic_consume(
            self.queue, self._on_record, arguments={"x-stream-offset": offset}
        )
        self._channel = channel
        self._synced = False

    async def _sync(self, publisher: Channel) -> None:
        marker = uuid.uuid4().hex
        arrived = self._markers[marker] = asyncio.get_running_loop().create_future()
        try:
            await self._append(publisher, {"marker": marker})
            await asyncio.wait_for(arrived, _SYNC_TIMEOUT)
            self._synced = True
        except TimeoutError:
            logger.warning("revoked ids may be incomplete: the revoke stream did not catch up")
        finally:
            self._markers.pop(marker, None)

    async def _append(self, publisher: Channel, record: dict[str, Any]) -> None:
        properties = Basic.Properties(content_type="application/json", delivery_mode=2)
        body = json.dumps(record).encode()
        await publisher.basic_publish(body, routing_key=self.queue, properties=properties)

    async def _on_record(self, message: DeliveredMessage) -> None:
        offset = (message.header.properties.headers or {}).get("x-stream-offset")
        if isinstance(offset, int):
            self._next_offset = offset + 1
        try:
            record = json.loads(message.body)
        except ValueError:
            record = None
        if isinstance(record, dict):
            self._apply(record)
        if isinstance(message.delivery, Basic.Deliver) and not message.channel.is_closed:
            # Stream acks only return credit; one per message keeps the flow going.
            await message.channel.basic_ack(int(message.delivery.delivery_tag or 0), wait=False)

    def _apply(self, record: dict[str, Any]) -> None:
        marker = record.get("marker")
        if isinstance(marker, str):
            waiter = self._markers.get(marker)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            return
        ids = record.get("ids")
        expires = record.get("expires")
        if isinstance(ids, list) and isinstance(expires, int | float):
            self._remember([str(i) for i in ids], float(expires))

    def _remember(self, task_ids: Sequence[str], expires: float) -> None:
        for task_id in task_ids:
            self._expiry[task_id] = max(expires, self._expiry.get(task_id, expires))
