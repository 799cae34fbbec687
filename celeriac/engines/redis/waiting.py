"""Waiting for Redis results: every waiter of a backend on one shared subscribed connection.

Celery's workers ``SET`` a result document, then ``PUBLISH`` it on a channel named like its
key (SPEC §5.2). A waiter subscribes to the channel and reads the key.

Why RESP3: on a RESP2 connection a subscriber may only (un)subscribe and PING, so the key
must be read on another connection, and safely only once the SUBSCRIBE is confirmed: two
round trips. A RESP3 connection (``HELLO 3``, Redis 6+) may run any command while
subscribed, and Redis runs one connection's commands in the order they were sent, so
``SUBSCRIBE key`` + ``GET key`` written together cost one round trip and miss nothing: a
document written before the GET runs is in its reply, one published after the SUBSCRIBE
ran arrives as a push. Pushes (messages, confirmations) are arrays; the other commands
sent here (``GET``, ``PING``, the handshake's ``HELLO``/``SELECT``) never answer with one,
so an array is a push and anything else is the next reply in command order.

The bookkeeping is written once, without I/O, in :class:`Subscriptions`: which keys are
watched and by how many waiters, the SUBSCRIBE + GET of a new key, replies matched to keys
in command order, pushes told from replies, the handshake, every subscription and read
written again on a new connection (so a write made while nobody listened is read then),
and UNSUBSCRIBE, which is never waited for: it goes out with the next write, or a moment
after the last waiter left. It decodes what arrives, so a bad document ends only the wait
for its own key, never the connection. Its drivers only move bytes:

* :class:`Resp3Listener`, on the event loop: an :class:`asyncio.Protocol` feeding it, with
  no reader task and no per-reply timeout;
* :class:`~celeriac.engines.redis.blocking.BlockingListener`, in the calling thread;
* :class:`PubSubListener`, the RESP2 fallback (Redis before 6, Sentinel): a redis-py
  connection, each key read through the pool once its SUBSCRIBE is confirmed.

Futures per task id are a :class:`~celeriac.backends.waiting.Waiters`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from celeriac.backends.base import Meta
from celeriac.backends.waiting import Waiters
from celeriac.engines.redis.connection import Endpoint, pack
from celeriac.exceptions import MissingDependency, SerializationError
from celeriac.protocol.serializers import Serializer
from celeriac.retry import Backoff
from celeriac.states import READY_STATES

try:
    import hiredis
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis result backend: pip install 'celeriac[redis]'") from exc

__all__ = [
    "MORE",
    "PING_EVERY",
    "TASK_KEY",
    "UNSUBSCRIBE_AFTER",
    "HandshakeError",
    "ProtocolError",
    "PubSubListener",
    "Resp3Listener",
    "Resp3Unsupported",
    "Subscriptions",
    "Watched",
    "check_handshake",
    "decode_document",
    "get_reply",
    "is_push",
    "new_parser",
]

logger = logging.getLogger("celeriac.engines.redis.results")

TASK_KEY: Final = "celery-task-meta-"
"""Celery's result key of a task id, after the global key prefix."""
MORE: Final = object()
"""What the parser returns when it needs more bytes."""
PING_EVERY: Final = 15.0
"""Seconds of silence after which a connection is PINGed (and dropped after as many more)."""
UNSUBSCRIBE_AFTER: Final = 0.1
"""Longest an UNSUBSCRIBE waits for another write to carry it."""
ProtocolError = hiredis.ProtocolError
"""What the parser raises on bytes that are not the Redis protocol."""
Item = bytes | None | Exception
"""What arrives for a key: a GET reply (the document, None, an error) or a published document."""

_HANDSHAKE_REPLIES: Final = 2  # HELLO's and SELECT's
_UNREACHABLE = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class Resp3Unsupported(Exception):
    """The server refused ``HELLO 3`` (Redis before 6, or HELLO not allowed)."""


class HandshakeError(ConnectionError):
    """The server refused ``SELECT`` (or the handshake got an unexpected reply)."""


def new_parser() -> hiredis.Reader:
    """A reply parser: error replies come back as exception objects, never raised."""
    return hiredis.Reader(notEnoughData=MORE)


def is_push(reply: Any) -> bool:
    """A push message (pub/sub), as opposed to the reply to the oldest pending command."""
    return isinstance(reply, list)


def check_handshake(hello: Any, select: Any) -> None:
    """Raise unless the replies to :attr:`Endpoint.handshake` say the connection is ready."""
    if not isinstance(hello, dict):
        raise Resp3Unsupported(f"HELLO 3 refused: {hello!r}")
    if select != b"OK":
        raise HandshakeError(f"SELECT refused: {select!r}")


def decode_document(key: str, data: bytes, serializer: Serializer) -> Meta:
    """A stored or published document; SerializationError naming ``key`` if it is bad."""
    try:
        meta = serializer.loads(data)
    except SerializationError as exc:
        raise SerializationError(f"result key {key!r} holds undecodable data: {exc}") from exc
    if not isinstance(meta, dict):
        raise SerializationError(f"result key {key!r} holds a {type(meta).__name__}, not a dict")
    return meta


def get_reply(key: str, item: Item, serializer: Serializer) -> Meta | None:
    """The document in a GET reply or a published message (None: no document there).

    A key of another type reads as no document, as MGET reads it; any other error reply
    is raised.
    """
    if item is None:
        return None
    if isinstance(item, Exception):
        if str(item).startswith("WRONGTYPE"):
            return None
        raise redis_errors.ResponseError(f"GET {key!r}: {item}")
    return decode_document(key, item, serializer)


class Watched:
    """What is known about one key while anyone waits for it."""

    __slots__ = ("answered", "channel", "confirmed", "latest", "outcome", "target", "task_id")

    def __init__(self, task_id: str, channel: bytes) -> None:
        self.task_id = task_id
        self.channel = channel
        self.latest: Meta | None = None
        """The last document seen."""
        self.outcome: Meta | Exception | None = None
        """What ends the wait: a ready document, or the error reading one."""
        self.answered = False
        """Whether a read of the key came back (so ``latest`` is the key's state)."""
        self.confirmed = False  # RESP2: the SUBSCRIBE is confirmed, the key may be read
        self.target = 0  # RESP2: the confirmation count that means "confirmed"

    def result(self) -> Meta | None:
        """The ready document, else the latest one; raises the error that ended the wait."""
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome if self.outcome is not None else self.latest


class Subscriptions:
    """The state of one connection carrying result waits, without its I/O.

    The methods that change what must be sent return the bytes to write (empty while
    there is no connection: :meth:`connect` writes everything then). With
    ``inline_reads`` (RESP3) a key's GET goes with its SUBSCRIBE; without (RESP2),
    :meth:`receive` reports the key once its SUBSCRIBE is confirmed, for the driver to
    read it elsewhere and hand the reply to :meth:`take`.
    """

    def __init__(self, key_prefix: str, serializer: Serializer, *, inline_reads: bool) -> None:
        self.prefix = key_prefix + TASK_KEY
        self.inline_reads = inline_reads
        self.connected = False
        self.watched: dict[bytes, Watched] = {}
        self._serializer = serializer
        self._waiters: dict[bytes, int] = {}
        self._replies: deque[bytes | None] = deque()  # the key of each pending GET (None: PING)
        self._unsubscribe: set[bytes] = set()
        self._sent: dict[bytes, int] = {}  # RESP2: SUBSCRIBEs sent per channel
        self._confirmed: dict[bytes, int] = {}  # RESP2: their confirmations
        self._parser = new_parser()
        self._greeting: list[Any] | None = None

    # -- waiters ----------------------------------------------------------------------------

    def add(self, task_id: str) -> tuple[Watched, bytes]:
        """One more waiter for ``task_id``: its record, and the commands to write now."""
        channel = (self.prefix + task_id).encode()
        watched = self.watched.get(channel)
        data = b""
        if watched is None:
            watched = self.watched[channel] = Watched(task_id, channel)
            self._waiters[channel] = 1
            self._unsubscribe.discard(channel)
            if self.connected:
                data = self._subscribe((channel,))
        else:
            self._waiters[channel] += 1
            if self.connected and self.inline_reads:
                data = self._read((channel,))
        return watched, self._out(data)

    def remove(self, watched: Watched) -> bool:
        """One waiter left; True when an UNSUBSCRIBE now waits for :meth:`flush`."""
        channel = watched.channel
        if self.watched.get(channel) is not watched:
            return False
        self._waiters[channel] -= 1
        if self._waiters[channel]:
            return False
        del self.watched[channel], self._waiters[channel]
        if not self.connected:
            return False  # a new connection subscribes only the keys watched then
        self._unsubscribe.add(channel)
        return True

    def flush(self) -> bytes:
        """The UNSUBSCRIBEs no other write carried."""
        return self._out(b"")

    # -- the connection ---------------------------------------------------------------------

    def open(self) -> None:
        """A new connection: parse from scratch, the handshake's replies first."""
        self._parser = new_parser()
        self._greeting = []

    @property
    def greeted(self) -> bool:
        """Whether the handshake's replies all arrived (and said yes)."""
        return self._greeting is None

    def connect(self) -> bytes:
        """The connection is ready: the commands subscribing and reading every watched key."""
        self.connected = True
        self._replies.clear()
        self._unsubscribe.clear()
        self._sent.clear()
        self._confirmed.clear()
        for watched in self.watched.values():
            watched.confirmed = False
        return self._subscribe(tuple(self.watched)) if self.watched else b""

    def disconnect(self) -> None:
        """The connection ended (the server forgets its subscriptions)."""
        self.connected = False
        self._replies.clear()
        self._unsubscribe.clear()

    def ping(self) -> bytes:
        """A PING, whose reply is dropped."""
        if self.inline_reads:
            self._replies.append(None)
        return self._out(pack("PING"))

    def feed(self, data: bytes) -> list[Watched]:
        """Bytes read off the connection: the watched keys whose wait they ended.

        Raises :class:`ProtocolError` for bytes that are not RESP, and
        :class:`Resp3Unsupported` / :class:`HandshakeError` for a refused handshake.
        """
        self._parser.feed(data)
        ended: list[Watched] = []
        while (reply := self._parser.gets()) is not MORE:
            if self._greeting is not None:
                self._greeting.append(reply)
                if len(self._greeting) == _HANDSHAKE_REPLIES:
                    check_handshake(*self._greeting)
                    self._greeting = None
            elif (watched := self.receive(reply)) is not None:
                ended.append(watched)
        return ended

    def receive(self, reply: Any) -> Watched | None:
        """One parsed reply: the key whose wait it ended, or (RESP2) whose SUBSCRIBE it
        confirmed; else None."""
        if is_push(reply):
            if len(reply) == 3 and reply[0] == b"message":
                watched = self.watched.get(reply[1])
                if watched is not None and self.take(watched, reply[2], reply=False):
                    return watched
            elif len(reply) == 3 and reply[0] == b"subscribe" and not self.inline_reads:
                return self._confirm(reply[1])
            return None
        if not self._replies:
            logger.warning("redis result listener: unexpected reply %r", reply)
            return None
        channel = self._replies.popleft()
        watched = self.watched.get(channel) if channel is not None else None
        if watched is not None and self.take(watched, reply, reply=True):
            return watched
        return None

    def take(self, watched: Watched, item: Item, *, reply: bool) -> bool:
        """Fold an item into ``watched``; True when it ended the wait."""
        if watched.outcome is not None:
            return False
        watched.answered = watched.answered or reply
        try:
            doc = get_reply(watched.channel.decode(), item, self._serializer)
        except Exception as exc:  # a bad document is its waiters' error, never the connection's
            watched.outcome = exc
            return True
        if doc is None:
            return False
        watched.latest = doc
        if doc.get("status") in READY_STATES:
            watched.outcome = doc
            return True
        return False

    # -- commands ---------------------------------------------------------------------------

    def _subscribe(self, channels: tuple[bytes, ...]) -> bytes:
        data = pack("SUBSCRIBE", *channels)
        if self.inline_reads:
            return data + self._read(channels)
        for channel in channels:
            self._sent[channel] = self.watched[channel].target = self._sent.get(channel, 0) + 1
        return data

    def _read(self, channels: tuple[bytes, ...]) -> bytes:
        self._replies.extend(channels)
        return b"".join([pack("GET", channel) for channel in channels])

    def _out(self, data: bytes) -> bytes:
        """``data`` after the pending UNSUBSCRIBEs (nothing without a connection)."""
        if not self.connected:
            return b""
        if self._unsubscribe:
            data = pack("UNSUBSCRIBE", *self._unsubscribe) + data
            self._unsubscribe.clear()
        return data

    def _confirm(self, channel: bytes) -> Watched | None:
        """RESP2: count a confirmation; the key to read once its last SUBSCRIBE is confirmed."""
        count = self._confirmed[channel] = self._confirmed.get(channel, 0) + 1
        watched = self.watched.get(channel)
        if watched is None:
            if count == self._sent.get(channel):
                del self._confirmed[channel], self._sent[channel]
            return None
        if count < watched.target:
            return None
        watched.confirmed = True
        return watched if watched.outcome is None else None


class _AsyncListener:
    """What both asyncio listeners share: the waits, resolved through :class:`Waiters`."""

    unsupported = False
    """The server turned out to have no RESP3: this listener gave up."""

    def __init__(self, subs: Subscriptions, backoff: Backoff) -> None:
        self._subs = subs
        self._backoff = backoff
        self._waiters: Waiters[Watched] = Waiters()
        self._flush_timer: asyncio.TimerHandle | None = None

    async def wait(self, task_id: str, timeout: float | None) -> Watched:
        """Wait until the key's wait ended or ``timeout`` passed; its record says how.

        Raises :class:`Resp3Unsupported` when the server turned out to have no RESP3.
        """
        future = self._waiters.add(task_id)
        watched = None
        try:
            watched = await self._watch(task_id)
            if watched.outcome is None:
                async with asyncio.timeout(timeout):
                    await future
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(task_id, future)
            if watched is not None and self._subs.remove(watched):
                self._flush_soon()
        assert watched is not None
        return watched

    async def _watch(self, task_id: str) -> Watched:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _ended(self, watched: Watched) -> None:
        """Wake the waiters of a key whose wait ended (if it is still watched)."""
        if self._subs.watched.get(watched.channel) is watched:
            self._waiters.resolve(watched.task_id, watched)

    def _flush_soon(self) -> None:
        """Send the pending UNSUBSCRIBEs a moment later, unless another write carries them.

        The timer is never cancelled by writes: re-arming it for every waiter would cost
        more than one spare wake-up every :data:`UNSUBSCRIBE_AFTER` seconds.
        """
        if self._flush_timer is None:
            loop = asyncio.get_running_loop()
            self._flush_timer = loop.call_later(UNSUBSCRIBE_AFTER, self._flush)

    def _stop_timers(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None


class _Wire(asyncio.Protocol):
    """The RESP3 connection's transport: bytes go to the listener, the end is reported."""

    def __init__(self, listener: Resp3Listener) -> None:
        loop = asyncio.get_running_loop()
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.greeted: asyncio.Future[None] = loop.create_future()  # handshake done, or lost
        self.closed: asyncio.Future[None] = loop.create_future()
        self.heard = True  # something arrived since the last keepalive check

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.heard = True
        self.listener.received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for future in (self.greeted, self.closed):
            if not future.done():
                future.set_result(None)
        self.listener.lost(self)


class Resp3Listener(_AsyncListener):
    """Every waiter of one backend on one RESP3 connection, driven from the event loop."""

    def __init__(self, endpoint: Endpoint, subs: Subscriptions, backoff: Backoff) -> None:
        super().__init__(subs, backoff)
        self._endpoint = endpoint
        self._wire: _Wire | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Connect, and keep reconnecting in the background whenever the connection ends.

        Raises :class:`Resp3Unsupported` when the server has no RESP3. When Redis cannot
        be reached now, returns anyway: waiters wait while the listener reconnects.
        """
        try:
            await self._open()
        except Resp3Unsupported:
            raise
        except Exception as exc:  # unreachable now: the supervisor keeps trying
            logger.warning("redis result listener: %r; reconnecting in the background", exc)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        self._stop_timers()
        if self._keepalive is not None:
            self._keepalive.cancel()
        wire, self._wire = self._wire, None
        if wire is not None and wire.transport is not None:
            wire.transport.close()

    async def _watch(self, task_id: str) -> Watched:
        watched, data = self._subs.add(task_id)
        self._write(data)
        return watched

    def _flush(self) -> None:
        self._flush_timer = None
        self._write(self._subs.flush())

    def _write(self, data: bytes) -> None:
        wire = self._wire
        if data and wire is not None and wire.transport is not None:
            wire.transport.write(data)

    def received(self, wire: _Wire, data: bytes) -> None:
        """Bytes from ``wire``: the handshake's replies, then replies and pushes."""
        try:
            ended = self._subs.feed(data)
        except Exception as exc:  # a refused handshake, or a garbled stream
            if not wire.greeted.done():
                wire.greeted.set_exception(exc)
            else:
                logger.warning("redis result listener: %r; reconnecting", exc)
            if wire.transport is not None:
                wire.transport.abort()
            return
        if not wire.greeted.done() and self._subs.greeted:
            wire.greeted.set_result(None)
        for watched in ended:
            self._ended(watched)

    def lost(self, wire: _Wire) -> None:
        """The connection ended: forget it (the supervisor reconnects)."""
        if self._wire is wire:
            self._wire = None
            self._subs.disconnect()
            if self._keepalive is not None:
                self._keepalive.cancel()

    async def _open(self) -> None:
        """Connect and handshake, then subscribe and read every watched key."""
        endpoint = self._endpoint
        wire = _Wire(self)
        self._subs.open()
        try:
            async with asyncio.timeout(endpoint.connect_timeout):
                await self._connect(wire)
                assert wire.transport is not None
                wire.transport.write(endpoint.handshake)
                await wire.greeted
            if wire.transport is None:
                raise ConnectionError(f"{endpoint} closed the connection during the handshake")
        except BaseException:
            if wire.transport is not None:
                wire.transport.abort()
            raise
        self._wire = wire
        self._write(self._subs.connect())
        self._keepalive = asyncio.get_running_loop().call_later(PING_EVERY, self._check_alive)

    async def _connect(self, wire: _Wire) -> None:
        """Open the transport of ``wire``."""
        ep = self._endpoint
        loop = asyncio.get_running_loop()
        if ep.path:
            await loop.create_unix_connection(lambda: wire, ep.path, ssl=ep.tls)
            return
        hostname = ep.host if ep.tls is not None else None
        transport, _ = await loop.create_connection(
            lambda: wire, ep.host, ep.port, ssl=ep.tls, server_hostname=hostname
        )
        if ep.keepalive:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def _check_alive(self) -> None:
        """PING now and then; a connection silent for a whole period is dropped."""
        wire = self._wire
        if wire is None or wire.transport is None:
            return
        if not wire.heard:
            logger.warning("redis result listener: no reply to PING; reconnecting")
            wire.transport.abort()
            return
        wire.heard = False
        self._write(self._subs.ping())
        self._keepalive = asyncio.get_running_loop().call_later(PING_EVERY, self._check_alive)

    async def _supervise(self) -> None:
        """Reconnect with backoff whenever the connection ends; never gives up.

        A server found without RESP3 (it was unreachable at :meth:`start`) ends the
        listener: :attr:`unsupported` is set and every wait raises
        :class:`Resp3Unsupported`, for its caller to wait another way.
        """
        failed = False
        while True:
            wire = self._wire
            if wire is not None:
                await asyncio.shield(wire.closed)
                logger.warning("redis result listener: connection to %s lost", self._endpoint)
            try:
                await self._open()
            except Resp3Unsupported as exc:
                logger.warning("redis result listener: %s; waiting another way", exc)
                self.unsupported = True
                self._waiters.fail_all(exc)
                return
            except Exception as exc:  # any failure: a listener must never stay down
                delay = self._backoff.next()
                logger.warning("redis result listener: %r; reconnecting in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                failed = True
                continue
            if failed:
                logger.warning("redis result listener: reconnected to %s", self._endpoint)
            failed = False
            self._backoff.reset()


class PubSubListener(_AsyncListener):
    """The RESP2 fallback: a dedicated redis-py pub/sub connection, keys read via ``read``.

    ``read(key)`` reads one key through the backend's pool (retrying as the backend does);
    it runs once a key's SUBSCRIBE is confirmed, and again after every reconnection.
    """

    def __init__(
        self,
        client: Redis[bytes],
        subs: Subscriptions,
        backoff: Backoff,
        read: Callable[[str], Awaitable[bytes | None]],
    ) -> None:
        super().__init__(subs, backoff)
        self._client = client
        self._read = read
        self._conn: AbstractConnection | None = None
        self._lock = asyncio.Lock()  # one writer at a time on the connection
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Stop listening and drop the connection."""
        self._stop_timers()
        tasks = [t for t in (self._reader, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reader = None
        await self._drop()

    async def _watch(self, task_id: str) -> Watched:
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._run())
        async with self._lock:
            watched, data = self._subs.add(task_id)
            await self._send(data)
        if watched.confirmed and watched.outcome is None:
            self._spawn(self._read_key(watched))  # already subscribed: read now
        return watched

    def _flush(self) -> None:
        self._flush_timer = None
        self._spawn(self._flush_now())

    async def _flush_now(self) -> None:
        async with self._lock:
            await self._send(self._subs.flush())

    async def _send(self, data: bytes) -> None:
        """Write ``data`` (the caller holds the lock); a failure is the reader's to notice."""
        if data and self._conn is not None:
            try:
                await self._conn.send_packed_command(data)
            except _UNREACHABLE as exc:
                logger.debug("redis result listener: write failed: %s", exc)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_key(self, watched: Watched) -> None:
        """Read a key whose subscription is confirmed; its reply goes into its record."""
        try:
            item: Item = await self._read(watched.channel.decode())
        except Exception as exc:  # e.g. ConnectionError after the backend's retries
            if watched.outcome is None:
                watched.outcome = exc
                self._ended(watched)
            return
        if self._subs.take(watched, item, reply=True):
            self._ended(watched)

    async def _run(self) -> None:
        """Reader task: (re)connect, (re)subscribe, dispatch; never gives up."""
        failed = False
        me = asyncio.current_task()
        while True:
            try:
                await self._connect()
                if failed:
                    logger.warning("redis result listener: reconnected")
                failed = False
                self._backoff.reset()
                await self._read_forever()
            except Exception as exc:  # any failure: a listener must never stay down
                if me is not None and me.cancelling():
                    # redis-py can turn our cancellation into a connection error: stop anyway.
                    raise asyncio.CancelledError from exc
                delay = self._backoff.next()
                if isinstance(exc, _UNREACHABLE):
                    logger.warning("redis result listener: %s; reconnecting in %.2fs", exc, delay)
                else:
                    logger.exception("redis result listener: unexpected error; reconnecting")
                await self._drop()
                await asyncio.sleep(delay)
                failed = True

    async def _connect(self) -> None:
        """Open a dedicated connection (outside the pool) and subscribe every watched key."""
        pool = self._client.connection_pool
        # No health checks on this connection: a PING reply would be read by our reader.
        conn = pool.connection_class(**{**pool.connection_kwargs, "health_check_interval": 0})
        await conn.connect()
        async with self._lock:
            self._conn = conn
            await self._send(self._subs.connect())

    async def _drop(self) -> None:
        """Forget the connection."""
        conn, self._conn = self._conn, None
        self._subs.disconnect()
        if conn is not None:
            await conn.disconnect()

    async def _read_forever(self) -> None:
        """Dispatch replies; PING when idle and treat two silent periods as a dead link."""
        awaiting_pong = False
        while True:
            conn = self._conn
            if conn is None:
                raise redis_errors.ConnectionError("pub/sub connection lost")
            response = await conn.read_response(timeout=PING_EVERY)
            if response is None:
                if awaiting_pong:
                    raise redis_errors.TimeoutError("no reply to PING on the pub/sub connection")
                async with self._lock:
                    await self._send(self._subs.ping())
                awaiting_pong = True
                continue
            awaiting_pong = False
            watched = self._subs.receive(response)
            if watched is None:
                continue
            if watched.outcome is not None:
                self._ended(watched)
            else:
                self._spawn(self._read_key(watched))
