"""The AMQP transport's channels: the consuming channel and the transactional mover.

:class:`ConsumerChannel` runs ``basic.consume`` (manual ack, ``basic.qos`` prefetch) on the
queues a worker fetches from, and keeps what arrives in one buffer per queue. Every delivery
that arrived and is not settled is in ``outstanding`` (delivery-tag order), which is what makes
a ``multiple=True`` ack or nack safe: it is used only when the settled tags are exactly the
oldest outstanding ones; otherwise each tag is settled on its own, all frames written without
waiting in between. A channel is used once: when it closes, its deliveries are back on their
queues (the broker requeues them), so its buffers and tags are dropped, never sent to another
channel (a stale tag there would ack someone else's message or close the channel).

Moves (publish a copy elsewhere, then ack the original) happen inside an AMQP transaction on
the channel that holds the original, so the copy and the ack commit together: nothing is lost
and no second copy appears if the process dies in between. The channel is switched to
transactions on its first move; from then on every settle commits too
(:class:`~celeriac.engines.amqp.leases.TxChannel` does the same for messages taken with
``basic.get`` from a lease queue).

Each fetch takes from the queues in turn, starting one queue further each time
(:class:`~celeriac.transport.base.Rotation`), so that no consumed queue starves.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from aiormq import exceptions as amqp_errors

from celeriac.engines.amqp.connection import (
    TRANSIENT_ERRORS,
    AbstractConnection,
    Basic,
    Channel,
    DeliveredMessage,
    died_in,
    envelope_of,
    private_headers,
)
from celeriac.engines.amqp.delay import stamped_not_before
from celeriac.transport.base import Delivery, Rotation

__all__ = ["LEASE_PREFIX", "Action", "ConsumerChannel", "Held"]

logger = logging.getLogger("celeriac.engines.amqp.broker")

Action = Literal["ack", "requeue", "drop"]

LEASE_PREFIX = "celeriac.lease."
"""Lease queues; a message that expired out of one is a redelivery."""


@dataclass(eq=False, slots=True)
class Held:
    """One delivery this transport knows about, from arrival until it is settled."""

    delivery: Delivery
    amqp_tag: int
    received: float
    private: dict[str, Any]
    channel: ConsumerChannel | None
    lease: str | None = None
    lease_since: float = 0.0


class ConsumerChannel:
    """One consuming channel with per-queue buffers (see the module docstring)."""

    _serials = itertools.count(1)

    def __init__(
        self,
        channel: Channel,
        prefetch: int,
        on_early: Callable[[Held, float], None] | None = None,
    ) -> None:
        self.serial = next(self._serials)
        self.channel = channel
        self.prefetch = prefetch
        self.buffers: dict[str, deque[Held]] = {}
        self.outstanding: dict[int, Held] = {}
        self.consumers: dict[str, str] = {}
        self.cancelled: set[str] = set()
        self.wake = asyncio.Event()
        self.tx = False
        self.lock = asyncio.Lock()
        self._queue_of: dict[str, str] = {}
        self._rotation = Rotation()
        self._on_early = on_early
        self._dead = False
        channel.closing.add_done_callback(self._on_closed)
        channel.on_consumer_cancel_callbacks.add(self._on_cancelled)

    def __repr__(self) -> str:
        return f"<ConsumerChannel #{self.serial} queues={sorted(self.consumers)}>"

    @classmethod
    async def open(
        cls,
        connection: AbstractConnection,
        prefetch: int,
        on_early: Callable[[Held, float], None] | None = None,
    ) -> ConsumerChannel:
        """Open a channel with ``basic.qos(prefetch)`` (per consumer, as quorum queues need)."""
        channel = await connection.channel(publisher_confirms=False)
        assert isinstance(channel, Channel)
        await channel.basic_qos(prefetch_count=prefetch)
        return cls(channel, prefetch, on_early)

    @property
    def alive(self) -> bool:
        """False once the channel (or its connection) closed."""
        return not self._dead and not self.channel.is_closed

    def _on_closed(self, closing: asyncio.Future[Any]) -> None:
        was_dead, self._dead = self._dead, True
        self.wake.set()
        if was_dead or closing.cancelled() or closing.exception() is None:
            return
        logger.warning(
            "consuming channel closed by the broker or network (%s): its %d unacked "
            "deliveries go back to their queues and will be redelivered",
            closing.exception(),
            len(self.outstanding),
        )

    def _on_cancelled(self, frame: Basic.Cancel) -> None:
        """The broker cancelled a consumer (its queue was deleted): consume it again later."""
        queue = self._queue_of.get(frame.consumer_tag or "")
        if queue is not None and self.consumers.get(queue) == frame.consumer_tag:
            del self.consumers[queue]
            logger.warning(
                "the broker cancelled consuming %r (deleted?); consuming it again", queue
            )
            self.cancelled.add(queue)
            self.wake.set()

    def abandon(self) -> None:
        """Stop using this channel (its owner is closing or replacing it); no warning."""
        self._dead = True
        self.wake.set()

    async def close(self) -> None:
        """Close the channel; the broker requeues everything still unacked on it."""
        self._dead = True
        self.wake.set()
        if not self.channel.is_closed:
            await self.channel.close()

    # consuming ----------------------------------------------------------------------------
    async def consume(self, queue: str) -> None:
        """Start consuming ``queue`` (idempotent)."""
        if queue in self.consumers:
            return
        tag = f"celeriac.{self.serial}.{uuid.uuid4().hex[:12]}"
        # Registered before the frame goes out: deliveries may arrive before consume-ok.
        self._queue_of[tag] = queue
        self.consumers[queue] = tag
        try:
            await self.channel.basic_consume(queue, self._on_deliver, consumer_tag=tag)
        except BaseException:
            self.consumers.pop(queue, None)
            raise

    async def _on_deliver(self, message: DeliveredMessage) -> None:
        frame = message.delivery
        assert isinstance(frame, Basic.Deliver)
        if self._dead:
            return
        queue = self._queue_of.get(frame.consumer_tag or "", "")
        private = private_headers(message)
        held = Held(
            delivery=Delivery(
                envelope=envelope_of(message),
                queue=queue,
                tag=f"{self.serial}.{frame.delivery_tag}",
                exchange=frame.exchange or "",
                routing_key=frame.routing_key or "",
                redelivered=bool(frame.redelivered)
                or died_in(message, LEASE_PREFIX)
                or "x-celeriac-redelivered" in private,
            ),
            amqp_tag=int(frame.delivery_tag or 0),
            received=time.monotonic(),
            private=private,
            channel=self,
        )
        self.outstanding[held.amqp_tag] = held
        not_before = stamped_not_before(held.private)
        if self._on_early is not None and not_before is not None and not_before > time.time():
            self._on_early(held, not_before)
            return
        if queue not in self.consumers:  # cancelled meanwhile: give it back
            asyncio.get_running_loop().create_task(self._settle_quietly([held], "requeue"))
            return
        self.buffers.setdefault(queue, deque()).append(held)
        self.wake.set()

    def take(self, queues: Sequence[str], limit: int) -> list[Held]:
        """Up to ``limit`` buffered deliveries, taking from each queue in turn."""
        buffers = [b for b in (self.buffers.get(q) for q in self._rotation.order(queues)) if b]
        taken: list[Held] = []
        while buffers and len(taken) < limit:
            for buffer in buffers:
                if len(taken) < limit:
                    taken.append(buffer.popleft())
            buffers = [b for b in buffers if b]
        return taken

    def buffered(self, queue: str) -> int:
        """How many deliveries of ``queue`` wait in the buffer."""
        return len(self.buffers.get(queue, ()))

    async def sync(self) -> None:
        """A round trip: deliveries the broker sent before it are in the buffers afterwards."""
        await self.channel.basic_qos(prefetch_count=self.prefetch)
        await asyncio.sleep(0)

    async def release(self, queue: str) -> int:
        """Stop consuming ``queue`` and give its buffered deliveries back; return how many."""
        tag = self.consumers.pop(queue, None)
        if tag is not None and self.alive:
            await self.channel.basic_cancel(tag)
            await asyncio.sleep(0)  # deliveries that preceded cancel-ok reach the buffer
        buffered = list(self.buffers.pop(queue, ()))
        await self.settle(buffered, "requeue")
        return len(buffered)

    async def drop_buffered(self, queue: str) -> int:
        """Delete the buffered deliveries of ``queue`` (purge); return how many."""
        buffered = list(self.buffers.pop(queue, ()))
        await self.settle(buffered, "drop")
        return len(buffered)

    def handed_out_before(self, older_than: float) -> list[Held]:
        """Deliveries handed to the worker that arrived before monotonic ``older_than``."""
        buffered = {id(h) for b in self.buffers.values() for h in b}
        return [
            h
            for h in self.outstanding.values()
            if h.received < older_than and id(h) not in buffered
        ]

    async def requeue_buffered_before(self, older_than: float) -> int:
        """Give back buffered deliveries that arrived before ``older_than``; return how many."""
        old: list[Held] = []
        for buffer in self.buffers.values():
            while buffer and buffer[0].received < older_than:
                old.append(buffer.popleft())
        await self.settle(old, "requeue")
        return len(old)

    # settling -----------------------------------------------------------------------------
    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        async with self.lock:
            yield
            if self.tx:
                await self.channel.tx_commit()

    async def settle(self, helds: Sequence[Held], action: Action) -> None:
        """Ack, requeue or drop deliveries of this channel; others are ignored."""
        mine = sorted(
            (h for h in helds if self.outstanding.get(h.amqp_tag) is h), key=lambda h: h.amqp_tag
        )
        if not mine or not self.alive:
            return
        tags = [h.amqp_tag for h in mine]
        multiple = list(itertools.islice(self.outstanding, len(tags))) == tags
        for tag in tags:
            del self.outstanding[tag]
        async with self._transaction():
            if multiple:
                await self._send(action, tags[-1], multiple=True)
            else:
                for tag in tags:
                    await self._send(action, tag, multiple=False)

    async def _settle_quietly(self, helds: Sequence[Held], action: Action) -> None:
        try:
            await self.settle(helds, action)
        except TRANSIENT_ERRORS as exc:
            logger.debug("settling on a closed channel: %s", exc)

    async def _send(self, action: Action, tag: int, *, multiple: bool) -> None:
        channel = self.channel
        if action == "ack":
            frame = channel.basic_ack(tag, multiple=multiple, wait=False)
        elif multiple:
            frame = channel.basic_nack(tag, multiple=True, requeue=action == "requeue", wait=False)
        else:
            frame = channel.basic_reject(tag, requeue=action == "requeue", wait=False)
        if not channel.write_queue.full():
            await frame  # (queued without waiting: nothing can close the channel meanwhile)
            return
        # A full frame buffer is drained only by the connection's writer. When the connection
        # dies, aiormq leaves a frame waiting for room there waiting for ever, and with it this
        # channel's lock and every settle behind it (seen when a cluster node was killed).
        await _unless_closed(channel, frame)

    async def move(
        self,
        held: Held,
        exchange: str,
        routing_key: str,
        properties: Basic.Properties,
        *,
        lease: str | None = None,
    ) -> bool:
        """Publish a copy of ``held`` and ack it in one transaction; False if it was settled.

        With ``lease``, ``held`` is marked as living in that lease queue under the same lock,
        even when the commit's outcome is unknown (connection lost): settling it then deletes
        the lease queue, which is right whether or not the commit happened.
        """
        async with self.lock:
            if self.outstanding.get(held.amqp_tag) is not held or not self.alive:
                return False
            if not self.tx:
                await self.channel.tx_select()
                self.tx = True
            del self.outstanding[held.amqp_tag]
            try:
                await self.channel.basic_publish(
                    held.delivery.envelope.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties,
                )
                await self.channel.basic_ack(held.amqp_tag)
                await self.channel.tx_commit()
            finally:
                if lease is not None:
                    held.lease, held.channel = lease, None
        return True


async def _unless_closed(channel: Channel, send: Coroutine[Any, Any, None]) -> None:
    """Await ``send`` on ``channel``; raise ``ChannelInvalidStateError`` (a transient error:
    the broker gives the channel's deliveries back) if the channel closes first."""
    sending = asyncio.ensure_future(send)
    await asyncio.wait((sending, channel.closing), return_when=asyncio.FIRST_COMPLETED)
    if not sending.done():
        sending.cancel()
        raise amqp_errors.ChannelInvalidStateError(f"{channel!r} closed while settling")
    sending.result()
