"""The RabbitMQ transport (AMQP 0-9-1), wire-compatible with Celery's py-amqp transport.

Wire (SPEC §4). Task messages go to the default exchange with the queue name as routing key,
or to a named exchange as routed; properties, headers and body as in
:mod:`~celeriac.engines.amqp.connection`; ``delivery_mode`` 2 unless the envelope says otherwise.
``declare`` creates what a Celery worker creates for the same ``Queue``: a durable exchange of
the given type, a queue (durable and auto-delete as the spec says, kombu's defaults
durable and not auto-delete) whose arguments are exactly
``queue_arguments`` plus ``x-max-priority`` when ``max_priority`` is set (so the two never
disagree with PRECONDITION_FAILED), and the binding. For a headers exchange the non-queue
entries of ``queue_arguments`` (``x-match`` and the values) are the binding arguments.
Publishing to a queue or exchange this process has not declared first checks that it exists
(a missing queue is created with Celery's defaults, a missing exchange drops the message with
a warning).

Publishing uses publisher confirms (option ``confirm_publish``): a batch is written at once
and ``publish`` returns when the broker confirmed every message. Messages are ``mandatory``:
an unroutable one comes back and is logged as a warning, as AMQP drops it. Lost connections are
retried (``max_retries``, backoff up to ``retry_backoff_max``), resending only what was not
confirmed, then ``publish`` raises ConnectionError.

Connection, declarations and retries: :mod:`~celeriac.engines.amqp.connection`.

Consuming (:mod:`~celeriac.engines.amqp.channels`): ``basic.consume`` with manual acks and a
per-consumer ``basic.qos`` (``prefetch_count``, default 100) on one channel; ``fetch`` takes
from per-queue buffers in turn and waits for arrivals (or for the channel to die) up to its
timeout. Priorities are RabbitMQ's (declare ``max_priority``); a message delivered into the
buffer keeps its place, so priorities order what waits in the broker, as in Celery. A queue
nobody has fetched from for ``release_idle_after`` seconds (2 s) is no longer consumed and its
buffered messages go back, so a worker that stops asking (busy, shutting down, rejected a
message) does not sit on messages other workers could run. ``tag`` is ``<channel>.<delivery
tag>``; acks and rejects are batched (``multiple`` only for the oldest contiguous tags).

Long tasks versus ``consumer_timeout``: see :mod:`~celeriac.engines.amqp.leases` (option
``consumer_timeout``, the broker's value, default 1800 s; ``lease_timeout``, 60 s). Buffered
messages older than ``consumer_timeout / 2`` are given back.

Delayed messages (``not_before``): :mod:`~celeriac.engines.amqp.delay`, a ladder of TTL
queues in the broker (0.1 s ticks); ``queue_sizes`` and ``purge`` include them. Clients set
``not_before`` only with the ``broker_delayed_delivery`` setting (Celery workers do not read
the ladder); by default an ETA task is published at once with its ``eta`` header, and the
worker moves a far one down the ladder (:meth:`~AMQPTransport.defer`), publish and ack in one
channel transaction.

Dead letters (a queue, browsed) and revokes (a stream): :mod:`~celeriac.engines.amqp.sidequeues`.

Options (``broker_transport_options``): ``confirm_publish`` (True), ``prefetch_count`` (100),
``consumer_timeout`` (1800 s), ``lease_timeout`` (60 s), ``release_idle_after`` (2 s),
``heartbeat`` (60 s), ``connect_timeout`` (10 s), ``max_retries`` (3), ``retry_backoff_max``
(5 s), ``dead_letter_queue`` (``celeriac.dead``),
``revoked_queue`` (``celeriac.revoked``), ``revoke_retention`` (``30D``).

Connection loss. One connection per instance, channels opened on demand. When the connection
or the consuming channel dies, the broker requeues what was unacked on it: the buffers are
dropped and the deliveries already handed out become stale (their acks are ignored, never sent
to a new channel); leased deliveries live in lease queues and are unaffected. A waiting
``fetch`` wakes up at once, reconnects (with backoff, until its timeout), consumes again and
keeps waiting; it never raises for a lost connection. Declarations are redone on reconnect, and
a queue deleted under a consumer is declared and consumed again. This module talks to aiormq,
aio-pika's protocol layer: aio-pika's robust connection reopens channels and consumers behind
the caller's back (delivery tags the buffers would not know) and answers passive declares
from a cache.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from celeriac.engines.amqp import connection as conn
from celeriac.engines.amqp.channels import Action, ConsumerChannel, Held
from celeriac.engines.amqp.connection import (
    PERMANENT_ERRORS,
    AMQPOptions,
    Session,
    Topology,
)
from celeriac.engines.amqp.delay import DelayLadder, DelayPlan, delay_tokens, stamp
from celeriac.engines.amqp.leases import Leases
from celeriac.engines.amqp.native_delay import NativeDelay
from celeriac.engines.amqp.pipeline import PipelinedPublisher, Sending, open_publisher
from celeriac.engines.amqp.sidequeues import DeadLetters, Revokes
from celeriac.masking import mask_url
from celeriac.reconnect import Outage
from celeriac.retry import Backoff
from celeriac.transport.base import DeadLetter, Delivery, Outgoing, QueueSpec

__all__ = ["AMQPTransport"]

logger = logging.getLogger(__name__)

_TICK = 0.25


class _Unconfirmed(ConnectionError):
    """Some messages of a batch were not confirmed: they are published again."""


class AMQPTransport:
    """A :class:`~celeriac.transport.base.Transport` on RabbitMQ (see the module docstring)."""

    def __init__(self, url: str, *, options: Mapping[str, Any] | None = None) -> None:
        self.url = url
        self._opts = AMQPOptions.from_options(options)
        for each in conn.broker_urls(url):  # validate every URL of a failover list early
            conn.connection_url(each, heartbeat=self._opts.heartbeat)
        self._session = Session(url, self._opts, f"celeriac-{os.getpid()}", self._on_connect)
        self._topology = Topology(
            self._session.admin,
            NativeDelay(self._opts.native_delayed_delivery_queue_type),
            probes=lambda: self._session.channel("probe"),
        )
        self._consumer: ConsumerChannel | None = None
        self._consumer_lock = asyncio.Lock()
        """Held while the consuming channel is opened or given queues: two fetches at once
        (control replies collected side by side) would open two, or consume a queue twice."""
        self._consuming = Outage(logger, f"RabbitMQ {mask_url(url)} for consuming")
        """Outages of the consuming channel: logged once each, and their end."""
        self._ladder = DelayLadder()
        self._leases = Leases(self._opts.lease_timeout, self._session)
        self._dead = DeadLetters(self._opts.dead_letter_queue, self._session, self._leases)
        self._revokes = Revokes(
            self._opts.revoked_queue, self._opts.revoke_retention, self._session
        )
        self._held: dict[str, Held] = {}
        self._fetching: dict[str, int] = {}
        self._last_fetch: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self._publisher: PipelinedPublisher | None = None
        """Publishing connection of its own (:mod:`.pipeline`): batches in one write."""

    def __repr__(self) -> str:
        return f"<AMQPTransport {mask_url(self.url)}>"

    @property
    def _closed(self) -> bool:
        return self._session.closed

    # connection ---------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the connection (idempotent, retried) and start the lease/idle housekeeping."""
        self._session.closed = False
        await self._session.retrying(self._session.connection, self._opts.connect_retry)
        if self._maintenance is None or self._maintenance.done():
            self._maintenance = asyncio.get_running_loop().create_task(self._maintain())

    async def _on_connect(self) -> None:
        """A new connection: nothing of the old one is valid; declare our queues again."""
        self._drop_consumer()
        self._topology.reset()
        self._leases.reset()
        self._ladder.reset()
        self._dead.reset()
        self._revokes.reset()
        await self._topology.redeclare()

    def _drop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        consumer.abandon()
        for tag, held in list(self._held.items()):
            if held.channel is consumer and held.lease is None:
                del self._held[tag]  # the broker requeued it: acks for it are moot

    async def close(self) -> None:
        """Give leased deliveries back, stop housekeeping and close the connection."""
        if self._closed:
            return
        for task in [self._maintenance, *self._tasks]:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._maintenance = None
        for held in [h for h in self._held.values() if h.lease is not None]:
            try:
                await self._leases.settle(held, "requeue")
            except Exception as exc:  # best effort: the lease expires back anyway
                logger.warning("could not hand back leased delivery %s: %s", held.delivery.tag, exc)
        self._held.clear()
        self._drop_consumer()
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await publisher.close()
        await self._session.close()

    # declarations ---------------------------------------------------------------------------
    async def declare(self, queues: Sequence[QueueSpec]) -> None:
        """Declare exchanges, queues and bindings as Celery does (see the module docstring)."""

        async def declare() -> None:
            await self._session.connection()
            await self._topology.declare(queues)

        await self._session.retrying(declare)

    async def unbind(self, queues: Sequence[QueueSpec]) -> None:
        """Unbind the specs' queues (deleting auto-delete ones); gone ones are fine."""

        async def unbind() -> None:
            await self._session.connection()
            await self._topology.unbind(queues)

        if queues:
            await self._session.retrying(unbind)

    # publishing -----------------------------------------------------------------------------
    async def publish(self, messages: Sequence[Outgoing]) -> None:
        """Publish a batch and wait for the broker's confirms (see the module docstring)."""
        pending = list(messages)

        async def attempt() -> None:
            nonlocal pending
            await self._session.connection()
            pending = await self._publish_once(pending)
            if pending:
                raise _Unconfirmed(f"{len(pending)} published message(s) not confirmed")

        await self._session.retrying(attempt)

    async def _publish_once(self, messages: Sequence[Outgoing]) -> list[Outgoing]:
        """Publish, returning the messages that must be sent again."""
        routed = [(out, due) for out in messages if (due := await self._route(out)) is not False]
        # Delayed messages go out in due order: a later send starts its delay later, so due
        # order is kept however long the batch takes to write.
        routed.sort(key=lambda item: item[1] if isinstance(item[1], float) else float("-inf"))
        publisher = await self._publisher_for()
        try:
            result = await publisher.publish([self._sending(out, due) for out, due in routed])
        except ConnectionError as exc:
            logger.debug("publish not confirmed: %r", exc)
            return [out for out, _ in routed]
        for exchange, routing_key in result.returned:
            logger.warning(
                "message to exchange %r with routing key %r was unroutable and dropped",
                exchange,
                routing_key,
            )
        if result.nacked:
            logger.debug("%d published message(s) nacked", len(result.nacked))
        return [routed[i][0] for i in result.nacked]

    async def _publisher_for(self) -> PipelinedPublisher:
        """The publishing connection, to the broker the session is connected to."""
        session = self._session
        self._publisher = await open_publisher(
            self._publisher, session.url, self._opts, f"{session.name}-publish"
        )
        return self._publisher

    async def _route(self, out: Outgoing) -> float | bool | None:
        """Check the destination; the due time when it goes down the delay ladder.

        None: publish as it is; False: drop it (no such destination, warned).
        """
        if not out.exchange:
            if not out.routing_key:
                logger.warning("message with no exchange and no routing key dropped")
                return False
            await self._topology.ensure_queue(out.routing_key)
        elif not await self._topology.exchange_exists(out.exchange):
            logger.warning("exchange %r does not exist; message dropped", out.exchange)
            return False
        due = out.not_before
        if due is None:
            return None
        plan = DelayPlan.for_delay(due - time.time(), out.exchange, out.routing_key)
        if plan is None:
            return None
        await self._ladder.ensure(await self._session.admin(), plan, out.exchange, out.routing_key)
        return float(due)

    def _sending(self, out: Outgoing, due: float | bool | None) -> Sending:
        """The message as it goes out; the delay is computed now, as the batch is written."""
        exchange, routing_key = out.exchange, out.routing_key
        properties = conn.properties_for(out.envelope)
        if isinstance(due, float):
            plan = DelayPlan.for_delay(due - time.time(), exchange, routing_key)
            if plan is not None:  # levels up to plan.top were declared by _route
                exchange, routing_key = plan.exchange, plan.routing_key
                properties = conn.properties_for(out.envelope, stamp(due))
        return Sending(exchange, routing_key, properties, out.envelope.body)

    # consuming ------------------------------------------------------------------------------
    async def fetch(self, queues: Sequence[str], *, limit: int, timeout: float) -> list[Delivery]:
        """Up to ``limit`` deliveries, waiting up to ``timeout`` s (see the module docstring)."""
        names = list(dict.fromkeys(queues))
        if not names or limit <= 0:
            return []
        deadline = time.monotonic() + max(0.0, timeout)
        for name in names:
            self._fetching[name] = self._fetching.get(name, 0) + 1
        try:
            return await self._fetch(names, limit, deadline)
        finally:
            now = time.monotonic()
            for name in names:
                self._fetching[name] -= 1
                self._last_fetch[name] = now

    async def _fetch(self, names: list[str], limit: int, deadline: float) -> list[Delivery]:
        backoff: Backoff | None = None  # made only when the broker is away
        while not self._closed:
            consumer = await self._consumer_for(names)
            if consumer is not None:
                taken = consumer.take(names, limit)
                if taken:
                    return self._hand_out(taken)
                consumer.wake.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if consumer is None:
                backoff = backoff or self._session.retry.backoff()
                await asyncio.sleep(min(backoff.next(), remaining))
                continue
            try:
                async with asyncio.timeout(remaining):  # (not wait_for: see AMQPSubscription)
                    await consumer.wake.wait()
            except TimeoutError:
                return []
        return []

    async def _consumer_for(self, names: list[str]) -> ConsumerChannel | None:
        """The live consuming channel, consuming ``names``; None while the broker is away."""
        consumer = self._consumer
        if (
            consumer is not None
            and consumer.alive
            and not consumer.cancelled
            and all(name in consumer.consumers for name in names)
        ):
            return consumer  # the usual case, without waiting for the lock
        async with self._consumer_lock:
            return await self._open_consumer(names)

    async def _open_consumer(self, names: list[str]) -> ConsumerChannel | None:
        try:
            consumer = self._consumer
            if consumer is None or not consumer.alive:
                self._drop_consumer()
                connection = await self._session.connection()
                consumer = await ConsumerChannel.open(
                    connection, self._opts.prefetch_count, self._on_early
                )
                self._consumer = consumer
            for name in consumer.cancelled:
                self._topology.forget(name)  # deleted under us: declare it again
            consumer.cancelled.clear()
            fresh = [name for name in names if name not in consumer.consumers]
            for name in fresh:
                await self._topology.ensure_queue(name)
                await consumer.consume(name)
            if fresh:
                await consumer.sync()  # what the queues held at consume time is now buffered
            self._consuming.ok()
            return consumer
        except PERMANENT_ERRORS:
            raise
        except conn.TRANSIENT_ERRORS as exc:
            if self._closed:
                raise RuntimeError(f"{self!r} is closed") from exc
            self._consuming.failed(exc)  # once per outage, not once per attempt
            return None

    def _hand_out(self, taken: list[Held]) -> list[Delivery]:
        self._held.update((held.delivery.tag, held) for held in taken)
        return [held.delivery for held in taken]

    def _on_early(self, held: Held, not_before: float) -> None:
        task = asyncio.get_running_loop().create_task(self._delay_again(held, not_before))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _delay_again(self, held: Held, not_before: float) -> None:
        """A message arrived before its time (clock skew): send it down the ladder again."""
        consumer = held.channel
        assert consumer is not None
        queue = held.delivery.queue
        plan = DelayPlan.for_delay(not_before - time.time(), "", queue)
        try:
            if plan is not None:
                await self._ladder.ensure(await self._session.admin(), plan, "", queue)
                properties = conn.properties_for(held.delivery.envelope, stamp(not_before))
                if await consumer.move(held, plan.exchange, plan.routing_key, properties):
                    return
        except conn.TRANSIENT_ERRORS as exc:
            logger.warning("could not delay early message again (%s); delivering it now", exc)
        if consumer.outstanding.get(held.amqp_tag) is held:
            consumer.buffers.setdefault(queue, deque()).append(held)
            consumer.wake.set()

    def holds(self, delivery: Delivery) -> bool:
        """Whether ``delivery`` is still this consumer's: leased, or on a live channel. One
        from a channel that died is back in the broker (maybe with another worker already)
        and must not run here (:class:`~celeriac.transport.LeaseHolder`)."""
        held = self._held.get(delivery.tag)
        if held is None:
            return False
        if held.lease is not None:
            return True
        return held.channel is not None and held.channel.alive

    # settling ---------------------------------------------------------------------------------
    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries (batched; stale ones from a dead channel are ignored)."""
        await self._settle(deliveries, "ack")

    async def reject(self, deliveries: Sequence[Delivery], *, requeue: bool) -> None:
        """Requeue (redelivered at once) or drop deliveries."""
        await self._settle(deliveries, "requeue" if requeue else "drop")

    async def _settle(self, deliveries: Sequence[Delivery], action: Action) -> None:
        by_channel: dict[ConsumerChannel, list[Held]] = {}
        leased: list[Held] = []
        for delivery in deliveries:
            held = self._held.pop(delivery.tag, None)
            if held is None:
                logger.debug("ignoring %s of unknown or stale delivery %s", action, delivery.tag)
            elif held.lease is not None:
                leased.append(held)
            elif held.channel is not None and held.channel.alive:
                by_channel.setdefault(held.channel, []).append(held)
        for channel, helds in by_channel.items():
            try:
                await channel.settle(helds, action)
            except conn.TRANSIENT_ERRORS as exc:
                logger.debug("channel died while settling (%s): the broker requeued them", exc)
            leased += [h for h in helds if h.lease is not None]  # moved to a lease meanwhile
        for held in leased:
            await self._session.retrying(partial(self._leases.settle, held, action))

    async def defer(self, delivery: Delivery, not_before: float) -> None:
        """Send a delivery down the delay ladder to its own queue and ack it, in one channel
        transaction; a leased one is published (confirmed) first, then acked."""
        held = self._held.get(delivery.tag)
        if held is None:
            logger.warning("cannot defer stale delivery %s; it will come back", delivery.tag)
            return
        consumer = held.channel
        plan = DelayPlan.for_delay(not_before - time.time(), "", delivery.queue)
        if plan is not None and held.lease is None and consumer is not None:
            try:
                await self._ladder.ensure(await self._session.admin(), plan, "", delivery.queue)
                properties = conn.properties_for(delivery.envelope, stamp(not_before))
                if await consumer.move(held, plan.exchange, plan.routing_key, properties):
                    self._held.pop(delivery.tag, None)
                    return
            except conn.TRANSIENT_ERRORS as exc:  # the channel's broker requeues it, or:
                logger.debug("defer in one transaction failed (%s); publish, then ack", exc)
            if not self.holds(delivery):
                return  # the channel died: the broker has the message back
        await self.publish([Outgoing(delivery.envelope, "", delivery.queue, not_before)])
        await self.ack([delivery])

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a delivery to the dead-letter queue with its reason (atomic with its ack)."""
        held = self._held.pop(delivery.tag, None)
        if held is None:
            logger.warning("cannot dead-letter stale delivery %s; it will come back", delivery.tag)
            return
        headers = self._dead.headers(held, reason)
        await self._session.retrying(lambda: self._dead.bury(held, headers))

    async def list_dead(self, limit: int = 100) -> list[DeadLetter]:
        """Dead letters, oldest first, left in place."""
        return await self._session.retrying(lambda: self._dead.browse(limit))

    async def requeue_dead(self, ids: Sequence[str] | None = None) -> int:
        """Put dead letters back on their queues; return how many."""
        ensure_queue = self._topology.ensure_queue
        return await self._session.retrying(lambda: self._dead.requeue(ids, ensure_queue))

    async def purge_dead(self, ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (all when ``ids`` is None) for good; return how many."""
        return await self._session.retrying(lambda: self._dead.purge(ids))

    # sizes, purge, revokes ----------------------------------------------------------------------
    def _delay_tokens(self, queue: str) -> list[str]:
        return delay_tokens(queue, self._topology.specs.get(queue))

    async def _synced_consumer(self, queues: Sequence[str]) -> ConsumerChannel | None:
        consumer = self._consumer
        if consumer is None or not consumer.alive:
            return None
        if any(q in consumer.consumers for q in queues):
            await consumer.sync()
        return consumer

    async def queue_sizes(self, queues: Sequence[str]) -> dict[str, int]:
        """Messages waiting per queue: ready, buffered here (not handed out) and delayed."""

        async def sizes() -> dict[str, int]:
            consumer = await self._synced_consumer(queues)
            result: dict[str, int] = {}
            for queue in queues:
                count = (await self._topology.probe(queue) or 0) + (
                    consumer.buffered(queue) if consumer else 0
                )
                for token in self._delay_tokens(queue):
                    count += await self._ladder.count(self._topology.probe, token)
                result[queue] = count
            return result

        return await self._session.retrying(sizes)

    async def purge(self, queues: Sequence[str]) -> int:
        """Delete waiting messages (ready, buffered, delayed); return how many."""

        async def purge() -> int:
            consumer = await self._synced_consumer(queues)
            total = 0
            for queue in queues:
                if consumer is not None:
                    total += await consumer.drop_buffered(queue)
                if await self._topology.probe(queue) is not None:
                    ok = await (await self._session.admin()).queue_purge(queue)
                    total += int(ok.message_count or 0)
                for token in self._delay_tokens(queue):
                    total += await self._ladder.purge(
                        self._topology.probe, self._session.admin, token
                    )
            return total

        return await self._session.retrying(purge)

    async def revoke(self, task_ids: Sequence[str], *, expires: float) -> None:
        """Append revoked ids to the revoke stream, valid until ``expires``."""
        await self._session.retrying(lambda: self._revokes.add(task_ids, expires))

    async def revoked(self) -> set[str]:
        """Every revoked id not yet expired (a local mirror of the stream)."""
        return await self._session.retrying(self._revokes.current)

    # housekeeping --------------------------------------------------------------------------
    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            try:
                await self._maintain_once()
            except Exception as exc:
                logger.warning("AMQP housekeeping failed: %r", exc)

    async def _maintain_once(self) -> None:
        now = time.monotonic()
        consumer = self._consumer
        if consumer is not None and consumer.alive:
            for queue in list(consumer.consumers):
                idle = now - self._last_fetch.get(queue, now)
                if not self._fetching.get(queue) and idle > self._opts.release_idle_after:
                    await consumer.release(queue)
                    self._topology.forget(queue)  # an auto-delete queue goes with its consumer
            old = now - self._opts.renew_after
            await consumer.requeue_buffered_before(old)
            for held in consumer.handed_out_before(old):
                if held.delivery.tag in self._held:
                    await self._leases.take(held)
        for held in [h for h in self._held.values() if self._leases.due(h, now)]:
            await self._leases.renew(held)
