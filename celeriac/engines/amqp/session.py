"""The AMQP transport's connection and declarations.

:class:`Session` holds one connection, reopened on demand after it is lost (the owner is told,
so it can drop what lived on the old one), and a few channels by role: ``publish`` (publisher
confirms), ``admin`` (declarations and passive probes, whose NOT_FOUND closes the channel, so it
is reopened on the next use) and a transactional mover. :meth:`Session.retrying` runs an
operation again after connection errors, with exponential backoff.

:class:`Topology` declares queues, exchanges and bindings as Celery does and remembers what
exists, so publishing to a known queue costs no round trip. An exchange that already exists is
used as it is (whoever declared it, with whatever durability); a missing one is created durable,
except Celery's transient ``celery.pidbox`` and ``reply.celery.pidbox``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from celeriac.engines.amqp.channels import TxChannel
from celeriac.engines.amqp.connection import (
    TRANSIENT_ERRORS,
    AbstractConnection,
    AMQPOptions,
    Channel,
    amqp_errors,
    connect,
)
from celeriac.engines.amqp.delay import target_token
from celeriac.transport.base import QueueSpec

__all__ = ["PERMANENT_ERRORS", "Session", "Topology", "split_arguments"]

logger = logging.getLogger("celeriac.engines.amqp.broker")
T = TypeVar("T")

PERMANENT_ERRORS = (
    amqp_errors.ChannelNotFoundEntity,
    amqp_errors.ChannelPreconditionFailed,
    amqp_errors.ChannelAccessRefused,
    amqp_errors.ChannelLockedResource,
)
_TRANSIENT_EXCHANGES = frozenset({"celery.pidbox", "reply.celery.pidbox"})  # SPEC §4.1
_QUEUE_ARGUMENTS = frozenset(
    "x-" + name
    for name in (
        "max-priority queue-type message-ttl expires max-length max-length-bytes overflow "
        "dead-letter-exchange dead-letter-routing-key dead-letter-strategy single-active-consumer "
        "queue-mode queue-version queue-master-locator queue-leader-locator delivery-limit "
        "quorum-initial-group-size initial-cluster-size max-age stream-max-segment-size-bytes "
        "consumer-timeout"
    ).split()
)


class Session:
    """One connection, reopened on demand, and its channels by role."""

    def __init__(
        self,
        url: str,
        options: AMQPOptions,
        name: str,
        on_connect: Callable[[], Awaitable[None]],
    ) -> None:
        self.url = url
        self.options = options
        self.name = name
        self.closed = False
        self._on_connect = on_connect
        self._conn: AbstractConnection | None = None
        self._channels: dict[str, Channel] = {}
        self._mover: TxChannel | None = None
        self._lock = asyncio.Lock()

    async def connection(self) -> AbstractConnection:
        """The live connection; connects (and tells the owner) when there is none."""
        current = self._conn
        if current is not None and not current.is_closed:
            return current
        async with self._lock:
            if self._conn is not None and not self._conn.is_closed:
                return self._conn
            if self.closed:
                raise RuntimeError(f"AMQP session for {self.url} is closed")
            self._channels.clear()
            self._mover = None
            self._conn = await connect(self.url, self.options, self.name)
            await self._on_connect()
            return self._conn

    async def channel(self, role: str) -> Channel:
        """The live channel for ``role`` (``publish`` has confirms when configured)."""
        channel = self._channels.get(role)
        if channel is None or channel.is_closed:
            connection = await self.connection()
            confirms = role == "publish" and self.options.confirm_publish
            opened = await connection.channel(publisher_confirms=confirms)
            assert isinstance(opened, Channel)
            channel = self._channels[role] = opened
        return channel

    async def admin(self) -> Channel:
        """The channel for declarations and probes."""
        return await self.channel("admin")

    async def mover(self) -> TxChannel:
        """The transactional channel for moving messages between queues."""
        if self._mover is None or not self._mover.alive:
            self._mover = await TxChannel.open(await self.connection())
        return self._mover

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call``, again after connection errors; ConnectionError when out of tries."""
        delay = 0.1
        for attempt in range(self.options.max_retries + 1):
            try:
                return await call()
            except PERMANENT_ERRORS:
                raise
            except TRANSIENT_ERRORS as exc:
                if attempt == self.options.max_retries or self.closed:
                    raise ConnectionError(f"RabbitMQ at {self.url}: {exc}") from exc
                logger.warning("RabbitMQ connection problem (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.retry_backoff_max)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the connection for good (unacked deliveries go back to their queues)."""
        self.closed = True
        connection, self._conn = self._conn, None
        self._channels.clear()
        self._mover = None
        if connection is not None and not connection.is_closed:
            await connection.close()


def split_arguments(spec: QueueSpec) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(queue.declare arguments, binding arguments) for a spec."""
    arguments = dict(spec.queue_arguments)
    if spec.max_priority is not None:
        arguments["x-max-priority"] = int(spec.max_priority)
    if spec.exchange_type != "headers":
        return arguments, None
    queue_args = {k: v for k, v in arguments.items() if k in _QUEUE_ARGUMENTS}
    return queue_args, {k: v for k, v in arguments.items() if k not in _QUEUE_ARGUMENTS}


class Topology:
    """Declared specs and what is known to exist on the broker."""

    def __init__(self, admin: Callable[[], Awaitable[Channel]]) -> None:
        self._admin = admin
        self.specs: dict[str, QueueSpec] = {}
        self._queues: set[str] = set()
        self._exchanges: set[str] = set()

    def reset(self) -> None:
        """Forget what exists (after a reconnect); the specs are kept to declare again."""
        self._queues.clear()
        self._exchanges.clear()

    async def declare(self, specs: Sequence[QueueSpec]) -> None:
        """Declare exchanges, queues and bindings; remember the specs."""
        for spec in specs:
            self.specs[spec.name] = spec
        for spec in specs:
            queue_args, binding_args = split_arguments(spec)
            if spec.exchange:
                await self._declare_exchange(spec.exchange, spec.exchange_type)
            channel = await self._admin()
            await channel.queue_declare(spec.name, durable=spec.durable, arguments=queue_args)
            if spec.exchange:
                await channel.queue_bind(
                    spec.name, spec.exchange, routing_key=spec.routing_key, arguments=binding_args
                )
            self._queues.add(spec.name)

    async def _declare_exchange(self, name: str, kind: str) -> None:
        """Create a missing exchange with Celery's durability; leave an existing one alone."""
        if not await self.exchange_exists(name):
            durable = name not in _TRANSIENT_EXCHANGES
            await (await self._admin()).exchange_declare(name, exchange_type=kind, durable=durable)
            self._exchanges.add(name)

    async def redeclare(self) -> None:
        """Declare every remembered spec again."""
        if self.specs:
            await self.declare(list(self.specs.values()))

    async def probe(self, queue: str) -> int | None:
        """Ready messages in ``queue``, or None when it does not exist."""
        try:
            ok = await (await self._admin()).queue_declare(queue, passive=True)
        except amqp_errors.ChannelNotFoundEntity:
            return None
        except amqp_errors.ChannelLockedResource:
            return 0  # another connection's exclusive queue: it exists
        return int(ok.message_count or 0)

    def forget(self, queue: str) -> None:
        """``queue`` may be gone: check it again on its next use."""
        self._queues.discard(queue)

    async def ensure_queue(self, queue: str) -> None:
        """Make sure ``queue`` exists: as declared before, else with Celery's defaults."""
        if queue in self._queues:
            return
        if await self.probe(queue) is None:
            spec = self.specs.get(queue)
            if spec is not None:
                await self.declare([spec])
            else:
                await (await self._admin()).queue_declare(queue, durable=True)
        self._queues.add(queue)

    async def exchange_exists(self, exchange: str) -> bool:
        """Whether ``exchange`` exists (the default exchange always does)."""
        if not exchange or exchange in self._exchanges:
            return True
        try:
            await (await self._admin()).exchange_declare(exchange, passive=True)
        except amqp_errors.ChannelNotFoundEntity:
            return False
        self._exchanges.add(exchange)
        return True

    def delay_tokens(self, queue: str) -> list[str]:
        """The delay-ladder targets whose messages end up in ``queue``.

        The queue itself (default exchange), and its binding when it was declared on a direct
        exchange; delayed messages sent to other exchanges are not attributed to a queue.
        """
        tokens = [target_token("", queue)]
        spec = self.specs.get(queue)
        if spec is not None and spec.exchange and spec.exchange_type == "direct":
            tokens.append(target_token(spec.exchange, spec.routing_key))
        return tokens
