"""Publishing on Redis: where each message goes, and storing it in one round trip.

Routing (SPEC §3.3, §3.6). The default exchange ``""`` delivers to the list named by the
routing key. A named exchange's bindings are the members ``routing_key SEP pattern SEP
queue`` of ``_kombu.binding.<exchange>``: direct matches the key exactly, topic with AMQP
wildcards (the pattern field is kombu's regex, written for kombu's sake and not read here).
Types of exchanges declared by celeriac are kept in ``celeriac:exchanges`` so every
instance routes alike; an exchange only kombu declared is topic if its bindings carry
patterns, else direct. Fanout exchanges deliver a list copy to the celeriac queues bound to
them (``celeriac:fanout:<exchange>``) and are also ``PUBLISH``ed on kombu's channel for
Celery workers and Flower; Celery's own broadcast queues get no list copy, which nobody
would read. kombu has no headers exchange, and neither has this transport.

Storing. A publish is one round trip of plain commands: one ``LPUSH`` of all its messages
per list (what one ``LPUSH`` per message would leave, in the same order), then for each
queue the wake-up tokens waiting consumers ``BLPOP`` (as the Lua scripts push them).
Messages for more than one list go inside ``MULTI``/``EXEC``, so a publish is stored whole
or not at all and a retry never duplicates part of it. No Lua: a script would copy every
message once more inside Redis (~3 µs per message in a batch, ~15 µs per call).

redis-py's command layer costs more than building the message: its asyncio client packs
arguments in Python and wraps each send in ``asyncio.wait_for`` (a Task per call on Python
3.11); both its pools record metrics on every checkout. So the commands are packed here in
one join and sent by :class:`AsyncPusher` / :class:`BlockingPusher` on redis-py
connections made exactly as the client's pool makes them (URL, auth, db, TLS, Unix socket,
Sentinel master discovery, health checks), which still parse the replies. As redis-py's
pools do, a reused connection is first checked for a close by the server while it sat
idle and reconnected then; one that failed mid-call is disconnected before it is used
again. At most ``max_connections`` are opened; a caller waits ``pool_timeout`` for one.

:class:`RedisBlockingPublisher` runs the common case (default exchange, due now) from the
calling thread, for the sync API: ``task.delay()`` would otherwise hand its publish to the
portal's loop, two thread switches that cost more than the round trip itself.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from celeriac.conf.report import mask_url
from celeriac.engines.redis.connection import (
    UNREACHABLE,
    RedisSettings,
    connect_redis_blocking,
    pack,
    parse_redis_url,
)
from celeriac.engines.redis.scripts import NOTIFY_CAP, NOTIFY_TTL, RedisKeys
from celeriac.exceptions import MissingDependency, OperationalError
from celeriac.protocol import kombu
from celeriac.protocol.ids import uuid4
from celeriac.transport.base import Outgoing, QueueSpec
from celeriac.transport.exchanges import topic_matches

try:
    from redis import exceptions as redis_errors
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis transport: pip install 'celeriac[redis]'") from exc

__all__ = [
    "PUSH_LIMIT",
    "SUPPORTED_TYPES",
    "AsyncPusher",
    "Batch",
    "BlockingPusher",
    "Push",
    "RedisBlockingPublisher",
    "Route",
    "Router",
    "blocking_publisher",
    "fanout_channel",
    "encode_copy",
    "push_of",
]

logger = logging.getLogger("celeriac.engines.redis.broker")

SUPPORTED_TYPES = frozenset({"direct", "topic", "fanout"})
PUSH_LIMIT = 10_000
"""Messages stored in one round trip by a pusher; larger batches take a redis-py MULTI."""

Command = tuple[Any, ...]


def encode_copy(msg: Outgoing) -> bytes:
    """The kombu envelope of ``msg`` with a fresh delivery tag (one per stored copy)."""
    tag = uuid4()
    return kombu.encode(
        msg.envelope, exchange=msg.exchange, routing_key=msg.routing_key, delivery_tag=tag
    )


@dataclass(frozen=True, slots=True)
class Route:
    """What a named exchange routes to: its type, kombu bindings and celeriac fanout queues."""

    kind: str
    table: list[kombu.Binding]
    fanout: list[str]


@dataclass(slots=True)
class Batch:
    """A publish sorted by what has to happen to each message."""

    pushes: list[tuple[str, bytes]] = field(default_factory=list)
    """(list key, stored message) to LPUSH."""
    delayed: dict[str, list[tuple[str, bytes]]] = field(default_factory=dict)
    """Per queue, (due time, step digit + message) for its delayed set."""
    broadcasts: list[tuple[str, bytes]] = field(default_factory=list)
    """(kombu fanout channel, message) to PUBLISH."""
    wake: dict[str, int] = field(default_factory=dict)
    """Wake-up tokens to push per queue."""

    @property
    def plain(self) -> bool:
        """Only pushes, few enough for one :class:`Push`."""
        return not self.delayed and not self.broadcasts and len(self.pushes) <= PUSH_LIMIT


_FORGET_UNBOUND = """
-- Drop an exchange's type record once nothing is bound to it (one step: a declare that
-- binds it again meanwhile keeps it).  KEYS: its binding sets, fanout set, exchanges hash.
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) == 0 then
  redis.call('HDEL', KEYS[4], ARGV[1])
end
return 1
"""


class Router:
    """Declares bindings and resolves where published messages go."""

    def __init__(self, keys: RedisKeys, db: int, fanout_exchanges: Iterable[str]) -> None:
        self.keys = keys
        self.db = db
        self.types: dict[str, str] = dict.fromkeys(fanout_exchanges, "fanout")

    def declare(self, pipe: Any, specs: Sequence[QueueSpec]) -> None:
        """Queue on ``pipe`` the binding writes kombu makes, plus celeriac's type records."""
        for spec in specs:
            if spec.exchange_type not in SUPPORTED_TYPES:
                raise NotImplementedError(
                    f"{spec.exchange_type} exchanges are not supported on Redis (nor by kombu)"
                )
        for spec in specs:
            exchange, kind = spec.exchange or spec.name, spec.exchange_type
            self.types[exchange] = kind
            rk = spec.routing_key or ("" if kind == "fanout" else spec.name)
            member = kombu.binding_member(rk, spec.name, topic=kind == "topic")
            pipe.sadd(self.keys.binding(exchange), member)
            pipe.sadd(self.keys.binding_permanent(exchange), member)
            pipe.hset(self.keys.exchanges, exchange, kind)
            if kind == "fanout":
                pipe.sadd(self.keys.fanout(exchange), spec.name)

    def unbind(self, pipe: Any, specs: Sequence[QueueSpec]) -> None:
        """Queue on ``pipe`` the removal of the bindings :meth:`declare` wrote for ``specs``
        (the exchange's type record stays: other queues may be bound to it); the lists of
        an ``auto_delete`` queue go too."""
        for spec in specs:
            exchange, kind = spec.exchange or spec.name, spec.exchange_type
            rk = spec.routing_key or ("" if kind == "fanout" else spec.name)
            member = kombu.binding_member(rk, spec.name, topic=kind == "topic")
            pipe.srem(self.keys.binding(exchange), member)
            pipe.srem(self.keys.binding_permanent(exchange), member)
            if kind == "fanout":
                pipe.srem(self.keys.fanout(exchange), spec.name)
            keys = [
                self.keys.binding(exchange),
                self.keys.binding_permanent(exchange),
                self.keys.fanout(exchange),
                self.keys.exchanges,
            ]
            pipe.eval(_FORGET_UNBOUND, len(keys), *keys, exchange)
            if spec.auto_delete:
                pipe.delete(*self.keys.buckets(spec.name), self.keys.notify(spec.name))

    async def load(self, client: Any, messages: Sequence[Outgoing]) -> dict[str, Route]:
        """Type and bindings of each named exchange in ``messages`` (one round trip)."""
        names = sorted({m.exchange for m in messages if m.exchange})
        if not names:
            return {}
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.exchanges, name)
            pipe.smembers(self.keys.binding(name))
            pipe.smembers(self.keys.fanout(name))
        replies = await pipe.execute()
        routes: dict[str, Route] = {}
        for i, name in enumerate(names):
            kind_raw, members, fanout = replies[3 * i : 3 * i + 3]
            parsed = [kombu.parse_binding(member) for member in members]
            table = [b for b in parsed if b is not None and b.queue]
            kind = kind_raw.decode() if kind_raw else self.types.get(name)
            if kind is None:
                kind = "topic" if any(b.pattern for b in table) else "direct"
            routes[name] = Route(kind, table, sorted(q.decode() for q in fanout))
        return routes

    def batch(
        self,
        messages: Sequence[Outgoing],
        routes: Mapping[str, Route],
        *,
        delayed: bool,
        poll_interval: float,
    ) -> Batch:
        """Sort ``messages``: each stored copy pushed now or (``delayed``) set aside until
        due; fanout ones also broadcast; a wake-up token per copy due within a poll."""
        batch = Batch()
        now = time.time()
        for msg in messages:
            route = routes.get(msg.exchange)
            if route is not None and route.kind == "fanout":
                # kombu peers (Celery workers, Flower) listen on the pub/sub channel.
                batch.broadcasts.append((self.fanout_channel(msg), encode_copy(msg)))
            if route is None and msg.routing_key:
                queues: Sequence[str] = (msg.routing_key,)  # the default exchange: the common case
            else:
                queues = self.queues(msg, route)
            for queue in queues:
                payload = encode_copy(msg)
                due = msg.not_before
                if delayed and due is not None and due > now:
                    step = kombu.bucket_of(msg.envelope.priority)
                    batch.delayed.setdefault(queue, []).append((repr(due), b"%d" % step + payload))
                    if due - now >= poll_interval:
                        continue  # waiting consumers look at the due time in time anyway
                else:
                    batch.pushes.append((self.keys.bucket(queue, msg.envelope.priority), payload))
                batch.wake[queue] = batch.wake.get(queue, 0) + 1
        return batch

    def queues(self, msg: Outgoing, route: Route | None) -> list[str]:
        """Queues a message goes to; empty (and a warning) when unroutable."""
        if route is None:  # the default exchange
            found = [msg.routing_key] if msg.routing_key else []
        elif route.kind == "fanout":
            return route.fanout  # may be none: a broadcast can reach only pub/sub listeners
        elif route.kind == "topic":
            found = [b.queue for b in route.table if topic_matches(b.routing_key, msg.routing_key)]
        else:
            found = [b.queue for b in route.table if b.routing_key == msg.routing_key]
        if not found and not msg.optional:
            logger.warning(
                "redis: message to exchange %r with routing key %r matches no queue; dropped",
                msg.exchange,
                msg.routing_key,
            )
        return list(dict.fromkeys(found))

    def fanout_channel(self, msg: Outgoing) -> str:
        """kombu's fanout channel of ``msg`` (see :func:`fanout_channel`)."""
        return fanout_channel(self.keys.prefix, self.db, msg.exchange, msg.routing_key)


def fanout_channel(prefix: str, db: int, exchange: str, routing_key: str = "") -> str:
    """kombu's fanout channel ``/<db>.<exchange>[/<routing key>]``, key prefix included
    (kombu's defaults ``fanout_prefix`` and ``fanout_patterns``)."""
    suffix = f"/{routing_key}" if routing_key else ""
    return f"{prefix}/{db}.{exchange}{suffix}"


class Push:
    """The commands storing one publish, packed, and how many replies they give."""

    __slots__ = ("data", "replies", "transaction")

    def __init__(self, commands: Sequence[Command], transaction: bool) -> None:
        self.transaction = transaction
        if transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        self.data = b"".join([pack(*command) for command in commands])
        self.replies = len(commands)

    def check(self, replies: list[Any]) -> None:
        """Raise the first error among the replies (inside ``EXEC``'s too)."""
        if self.transaction and isinstance(replies[-1], list):
            replies = replies[-1]
        for reply in replies:
            if isinstance(reply, redis_errors.ResponseError):
                raise reply


def push_commands(
    keys: RedisKeys, pushes: Sequence[tuple[str, bytes]], wake: Mapping[str, int]
) -> tuple[list[Command], int]:
    """The commands storing ``pushes`` ((list key, message) pairs) and waking ``wake``,
    and the number of lists they write messages to."""
    groups: dict[str, list[bytes]] = {}
    for key, payload in pushes:
        group = groups.get(key)
        if group is None:
            groups[key] = [payload]
        else:
            group.append(payload)
    commands: list[Command] = [("LPUSH", key, *payloads) for key, payloads in groups.items()]
    for queue, count in wake.items():
        notify = keys.notify(queue)
        commands.append(("LPUSH", notify, *("1",) * min(count, NOTIFY_CAP)))
        commands.append(("LTRIM", notify, 0, NOTIFY_CAP - 1))
        commands.append(("EXPIRE", notify, NOTIFY_TTL))
    return commands, len(groups)


def push_of(keys: RedisKeys, pushes: Sequence[tuple[str, bytes]], wake: Mapping[str, int]) -> Push:
    """The packed :class:`Push` of :func:`push_commands` (atomic: MULTI for several lists)."""
    commands, lists = push_commands(keys, pushes, wake)
    return Push(commands, transaction=lists > 1)


class _Connections:
    """Connections made as the client's ``pool`` makes them, at most ``max_connections``,
    the idle ones kept in a stack."""

    def __init__(self, pool: Any, max_connections: int, timeout: float, **kwargs: Any) -> None:
        self._connection_class = pool.connection_class
        self._connection_kwargs = {**pool.connection_kwargs, **kwargs}
        self._idle: list[Any] = []
        self._created = 0
        self._max = max_connections
        self._timeout = timeout

    def _new(self) -> Any | None:
        """A new connection, or None when ``max_connections`` exist."""
        if self._created >= self._max:
            return None
        self._created += 1
        return self._connection_class(**self._connection_kwargs)


class BlockingPusher(_Connections):
    """Sends pushes from the calling thread.

    A free connection is popped without a lock (list ``pop``/``append`` are atomic); only
    creating one takes a lock, and a caller finding all busy polls for one (rare: it needs
    that many threads publishing at the same moment).
    """

    def __init__(self, pool: Any, max_connections: int, timeout: float) -> None:
        super().__init__(pool, max_connections, timeout)
        self._lock = threading.Lock()

    def push(self, push: Push) -> bool:
        """Store one publish and return True; False when Redis could not be reached (nothing
        was sent); raise redis-py's errors on other failures."""
        conn = self._checkout()
        try:
            if _stale_blocking(conn):
                conn.disconnect()  # closed by the server while idle: connect afresh
            try:
                conn.connect()  # no-op when connected
            except UNREACHABLE:
                return False  # nothing sent: the caller's retrying path may send it
            conn.send_packed_command([push.data])
            replies = [_reply_blocking(conn) for _ in range(push.replies)]
        except BaseException:
            conn.disconnect()  # maybe half-sent or half-read: reconnect on next use
            raise
        finally:
            self._idle.append(conn)
        push.check(replies)
        return True

    def _checkout(self) -> Any:
        deadline = None
        while True:
            try:
                return self._idle.pop()
            except IndexError:
                pass
            with self._lock:
                conn = self._new()
            if conn is not None:
                return conn
            now = time.monotonic()
            deadline = deadline or now + self._timeout
            if now >= deadline:
                raise redis_errors.ConnectionError("No connection available.")
            time.sleep(0.001)

    def close(self) -> None:
        """Disconnect the idle connections."""
        while self._idle:
            self._idle.pop().disconnect()


def _stale_blocking(conn: Any) -> bool:
    """Whether an idle connection was closed by the server (or holds stray data)."""
    try:
        return bool(conn.can_read(timeout=0))
    except UNREACHABLE:
        return True


def _reply_blocking(conn: Any) -> Any:
    """One reply; an error reply is returned, so that every reply is read off the socket."""
    try:
        return conn.read_response()
    except redis_errors.ResponseError as exc:
        return exc


class AsyncPusher(_Connections):
    """Sends pushes on the event loop, without a Task per send (no lock: one loop).

    Its connections have no socket timeout of their own: each call runs under one
    ``asyncio.timeout`` of the configured ``socket_timeout`` instead, which redis-py would
    otherwise implement with ``asyncio.wait_for`` around every write.
    """

    def __init__(
        self, pool: Any, max_connections: int, timeout: float, socket_timeout: float | None
    ) -> None:
        super().__init__(pool, max_connections, timeout, socket_timeout=None)
        self._socket_timeout = socket_timeout

    async def push(self, push: Push) -> None:
        """Store one publish; raise redis-py's errors on failure."""
        push.check(await self.call(push.data, push.replies))

    async def call(self, data: bytes, replies: int, *, blocks: float = 0.0) -> list[Any]:
        """Send packed commands and read their ``replies`` (error replies are returned, not
        raised); ``blocks``: seconds a blocking command among them may wait in Redis.

        The worker's per-task scripts (fetch, store, ack) go this way too, not through
        redis-py's command layer, whose overhead is the larger part of a round trip.
        """
        conn = self._idle.pop() if self._idle else await self._checkout()
        timeout = None if self._socket_timeout is None else self._socket_timeout + blocks
        try:
            if conn.is_connected and await _stale_async(conn):
                await conn.disconnect()  # closed by the server while idle: connect afresh
            async with asyncio.timeout(timeout):
                if not conn.is_connected:
                    await conn.connect()  # (a Sentinel connection resolves the master here)
                await conn.send_packed_command(data)
                return [await _reply_async(conn) for _ in range(replies)]
        except BaseException:
            await conn.disconnect(nowait=True)  # maybe half-sent or half-read
            raise
        finally:
            self._idle.append(conn)

    async def _checkout(self) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while not self._idle:
            conn = self._new()
            if conn is not None:
                return conn
            if loop.time() >= deadline:
                raise redis_errors.ConnectionError("No connection available.")
            await asyncio.sleep(0.001)
        return self._idle.pop()

    async def close(self) -> None:
        """Disconnect the idle connections."""
        while self._idle:
            await self._idle.pop().disconnect()


async def _stale_async(conn: Any) -> bool:
    """Whether an idle connection was closed by the server (or holds stray data)."""
    # redis-py 8 renamed the check; older versions only have the old name.
    check = getattr(conn, "can_read", None) or conn.can_read_destructive
    try:
        return bool(await check())
    except UNREACHABLE:
        return True


async def _reply_async(conn: Any) -> Any:
    """One reply; an error reply is returned, so that every reply is read off the socket."""
    try:
        return await conn.read_response()
    except redis_errors.ResponseError as exc:
        return exc


class ReplyLost(OperationalError):
    """A publish was sent and its reply lost: the message may or may not be stored."""

    maybe_sent = True


class NotSent(OperationalError):
    """Redis could not be reached: nothing was sent."""

    maybe_sent = False


class RedisBlockingPublisher:
    """Stores default-exchange messages that are due now, from the calling thread.

    Anything else (named exchanges, which need their bindings read; countdowns and ETAs,
    which go to the delayed set; Sentinel) makes :meth:`publish` return False before
    touching Redis, and the caller uses the asyncio transport instead.
    """

    def __init__(self, settings: RedisSettings, url: str = "redis://") -> None:
        self.url = url
        self.keys = RedisKeys(settings.key_prefix)
        self._router = Router(self.keys, settings.db, ())
        self._client = connect_redis_blocking(settings)
        self._pusher = BlockingPusher(
            self._client.connection_pool, settings.max_connections, settings.pool_timeout
        )

    def publish(self, messages: Sequence[Outgoing]) -> bool:
        """Store ``messages`` and return True, or return False (nothing sent) if not ours;
        :class:`NotSent` when Redis cannot be reached, :class:`ReplyLost` when the reply to
        a sent publish was lost."""
        if not messages or len(messages) > PUSH_LIMIT or not all(map(_is_plain, messages)):
            return False
        batch = self._router.batch(messages, {}, delayed=False, poll_interval=0.0)
        try:
            sent = self._pusher.push(push_of(self.keys, batch.pushes, batch.wake))
        except UNREACHABLE as exc:  # sent, and the reply lost: stored or not, we cannot tell
            raise ReplyLost(f"redis publish at {mask_url(self.url)}: {exc}") from exc
        if not sent:
            raise NotSent(f"redis publish at {mask_url(self.url)}: cannot connect")
        return True

    def close(self) -> None:
        """Release the connections."""
        self._pusher.close()
        self._client.connection_pool.disconnect()


def _is_plain(msg: Outgoing) -> bool:
    """Default exchange, a queue name, due now."""
    due = msg.not_before
    return not msg.exchange and bool(msg.routing_key) and (due is None or due <= time.time())


def blocking_publisher(url: str, options: Mapping[str, Any]) -> RedisBlockingPublisher | None:
    """A blocking publisher for ``url``, or None where only the asyncio path works."""
    settings = parse_redis_url(url, dict(options))
    if settings.sentinels or settings.cluster:
        return None  # master discovery and slot routing live in the asyncio client
    return RedisBlockingPublisher(settings, url)
