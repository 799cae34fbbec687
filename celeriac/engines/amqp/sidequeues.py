"""The AMQP transport's side queues, read without being consumed: dead letters and revokes.

Dead letters (:class:`DeadLetters`): one durable queue, browsed. ``dead_letter`` moves the
message (a transaction: copy published, original acked) to the durable classic queue
``celeriac.dead`` (option ``dead_letter_queue``) with the headers ``x-celeriac-dead-id``,
``-reason``, ``-queue``, ``-exchange``, ``-routing-key`` and ``-at`` (epoch milliseconds); a
leased delivery is moved from its lease queue the same way. ``list_dead`` browses: it takes up
to ``limit`` messages with ``basic.get`` on a channel of its own and closes that channel, which
puts them all back in their places (oldest first). ``requeue_dead`` walks the queue on a
transactional channel: a chosen message is published to the default exchange with its original
queue as routing key, without the dead-letter headers, and acked, committed together; the
others go back in place when the channel closes. ``purge_dead`` purges the queue (all) or walks
it and acks the chosen ones. A browse holds the messages it took until it closes its channel, so
a walk at the same moment would not see them: within one transport (the dashboard listing for
its live refresh while a button requeues) browse and walks take turns; two processes browsing
at the same moment still each miss what the other holds for those milliseconds.

Revokes (:class:`Revokes`): a RabbitMQ stream every transport instance reads in full.
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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from celeriac.engines.amqp.channels import Held
from celeriac.engines.amqp.connection import (
    Basic,
    Channel,
    DeliveredMessage,
    Session,
    envelope_of,
    properties_for,
)
from celeriac.engines.amqp.leases import Leases
from celeriac.transport.base import DeadLetter

__all__ = ["DEAD_HEADERS", "DeadLetters", "Revokes"]

logger = logging.getLogger("celeriac.engines.amqp.broker")

_H = "x-celeriac-dead-"
DEAD_HEADERS = tuple(_H + k for k in ("id", "reason", "queue", "exchange", "routing-key", "at"))
_SYNC_TIMEOUT = 10.0  # how long revoked() waits for the stream to catch up
_PREFETCH = 1000  # streams require a prefetch


class DeadLetters:
    """The dead-letter queue: what goes in, browsing, putting back."""

    def __init__(self, queue: str, session: Session, leases: Leases) -> None:
        self.queue = queue
        self._session = session
        self._leases = leases
        self._declared = False
        self._turn = asyncio.Lock()  # a browse hides what it holds from a walk: take turns

    def reset(self) -> None:
        """Check the queue again on the next use (after a reconnect)."""
        self._declared = False

    async def _ensure(self) -> None:
        """Declare the dead-letter queue once per connection."""
        if not self._declared:
            await (await self._session.admin()).queue_declare(self.queue, durable=True)
            self._declared = True

    @staticmethod
    def headers(held: Held, reason: str) -> dict[str, Any]:
        """The headers recording why and from where ``held`` died."""
        delivery = held.delivery
        values = (uuid.uuid4().hex, reason, delivery.queue, delivery.exchange,
                  delivery.routing_key, round(time.time() * 1000))  # fmt: skip
        return dict(zip(DEAD_HEADERS, values, strict=True))

    async def bury(self, held: Held, headers: dict[str, Any]) -> None:
        """Move ``held`` (from its channel or its lease) to the dead-letter queue, atomically."""
        await self._ensure()
        if held.lease is None and held.channel is not None:
            properties = properties_for(held.delivery.envelope, headers)
            if await held.channel.move(held, "", self.queue, properties):
                return
        if held.lease is not None:  # leased before, or while we were waiting for the channel
            await self._leases.move_out(held, self.queue, headers)

    async def browse(self, limit: int) -> list[DeadLetter]:
        """Up to ``limit`` dead letters, oldest first, left in the queue."""
        await self._ensure()
        async with self._turn:
            channel = await (await self._session.connection()).channel(publisher_confirms=False)
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
        self, ids: Sequence[str] | None, ensure_queue: Callable[[str], Awaitable[object]]
    ) -> int:
        """Put the chosen dead letters (all when ``ids`` is None) back; return how many."""
        await self._ensure()
        async with self._turn:
            return await self._walk(ids, lambda c, m: self._put_back(c, m, ensure_queue))

    async def purge(self, ids: Sequence[str] | None) -> int:
        """Delete the chosen dead letters (all when ``ids`` is None); return how many."""
        await self._ensure()
        async with self._turn:
            if ids is None:
                admin = await self._session.admin()
                purged = await admin.queue_purge(self.queue)
                return int(purged.message_count or 0)
            return await self._walk(ids, self._drop)

    async def _walk(
        self, ids: Sequence[str] | None, act: Callable[[Any, DeliveredMessage], Awaitable[None]]
    ) -> int:
        """Take the queue's messages in turn and ``act`` on the chosen ones (all when ``ids``
        is None) on a transactional channel; the others go back when the channel closes."""
        wanted = None if ids is None else set(ids)
        channel = await (await self._session.connection()).channel(publisher_confirms=False)
        done = 0
        try:
            await channel.tx_select()
            while wanted is None or done < len(wanted):
                message = await channel.basic_get(self.queue)
                if not isinstance(message.delivery, Basic.GetOk):
                    break
                headers = message.header.properties.headers or {}
                if wanted is not None and headers.get(_H + "id") not in wanted:
                    continue
                await act(channel, message)
                done += 1
        finally:
            await channel.close()
        return done

    @staticmethod
    async def _drop(channel: Any, message: DeliveredMessage) -> None:
        assert isinstance(message.delivery, Basic.GetOk)
        await channel.basic_ack(int(message.delivery.delivery_tag or 0))
        await channel.tx_commit()

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


class Revokes:
    """Writes revokes to the stream and mirrors the stream in memory."""

    def __init__(self, queue: str, retention: str, session: Session) -> None:
        self.queue = queue
        self.retention = retention
        self._session = session
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

    async def _ensure(self) -> None:
        """Declare the stream once per connection."""
        if self._declared:
            return
        arguments: dict[str, Any] = {
            "x-queue-type": "stream",
            "x-max-age": self.retention,
            "x-stream-max-segment-size-bytes": 1_000_000,
        }
        admin = await self._session.admin()
        await admin.queue_declare(self.queue, durable=True, arguments=arguments)
        self._declared = True

    async def add(self, task_ids: Sequence[str], expires: float) -> None:
        """Append one revoke record (confirmed) and remember it locally at once."""
        await self._ensure()
        await self._append({"ids": list(task_ids), "expires": float(expires)})
        self._remember(task_ids, expires)

    async def current(self) -> set[str]:
        """Every revoked id whose revoke has not expired."""
        async with self._lock:
            await self._subscribe()
            if not self._synced:
                await self._sync()
        now = time.time()
        for task_id in [t for t, exp in self._expiry.items() if exp <= now]:
            del self._expiry[task_id]
        return set(self._expiry)

    async def close(self) -> None:
        """Stop reading the stream."""
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await channel.close()

    async def _subscribe(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            return
        await self._ensure()
        channel = await (await self._session.connection()).channel(publisher_confirms=False)
        assert isinstance(channel, Channel)
        await channel.basic_qos(prefetch_count=_PREFETCH)  # streams require a prefetch
        offset: Any = "first" if self._next_offset is None else self._next_offset
        await channel.basic_consume(
            self.queue, self._on_record, arguments={"x-stream-offset": offset}
        )
        self._channel = channel
        self._synced = False

    async def _sync(self) -> None:
        marker = uuid.uuid4().hex
        arrived = self._markers[marker] = asyncio.get_running_loop().create_future()
        try:
            await self._append({"marker": marker})
            await asyncio.wait_for(arrived, _SYNC_TIMEOUT)
            self._synced = True
        except TimeoutError:
            logger.warning("revoked ids may be incomplete: the revoke stream did not catch up")
        finally:
            self._markers.pop(marker, None)

    async def _append(self, record: dict[str, Any]) -> None:
        properties = Basic.Properties(content_type="application/json", delivery_mode=2)
        body = json.dumps(record).encode()
        publisher = await self._session.channel("publish")
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
