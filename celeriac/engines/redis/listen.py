"""One RESP3 connection per Redis result backend, shared by all its waiters (asyncio).

A waiter (:class:`Watch`) for a key sends ``SUBSCRIBE key`` (when it is the key's first
waiter) and ``GET key`` in one write, and then receives, in order, the GET's reply and
every message published on the channel. :mod:`celeriac.engines.redis.resp3` explains why that
single round trip misses nothing. The same holds for a key's later waiters: their GET
follows the key's SUBSCRIBE on the connection, whether or not it is confirmed yet. A
reconnection writes SUBSCRIBE and GET again for every key being waited on, so a write made
while nobody listened is read then.

The connection is a plain :class:`asyncio.Protocol` feeding a hiredis parser: replies are
dispatched from ``data_received`` straight to the waiters, with no reader task and no
per-reply timeout. Replies to GETs are matched to keys in command order. UNSUBSCRIBE is
never waited for: a key whose last waiter left is unsubscribed with the next write, or by a
timer a moment later when nothing else was written.

Payloads are handed over undecoded: a payload that cannot be decoded is its waiter's
problem, never the connection's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import Any

from celeriac.engines.redis.resp3 import (
    HANDSHAKE_REPLIES,
    MORE,
    TIMEOUT,
    Endpoint,
    Expired,
    Item,
    Resp3Unsupported,
    check_handshake,
    is_push,
    new_parser,
    pack,
)
from celeriac.retry import Backoff

__all__ = ["Resp3Listener", "Watch"]

logger = logging.getLogger("celeriac.engines.redis.results")

_PING_EVERY = 15.0
_UNSUBSCRIBE_AFTER = 0.1


class Watch:
    """One wait on one key: its GET replies and its channel's messages, in order."""

    __slots__ = ("answered", "channel", "expired", "future", "items")

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.items: deque[Item] = deque()
        self.future: asyncio.Future[None] | None = None
        self.expired = False
        self.answered = False
        """Whether a GET reply arrived (so the items include the key's state)."""

    def push(self, item: Item, *, reply: bool) -> None:
        """Hand over an item and wake the waiter."""
        self.answered = self.answered or reply
        self.items.append(item)
        self._wake()

    def expire(self) -> None:
        """The deadline passed: :meth:`next` returns :data:`TIMEOUT` once items run out."""
        self.expired = True
        self._wake()

    def _wake(self) -> None:
        future = self.future
        if future is not None and not future.done():
            future.set_result(None)

    async def next(self) -> Item | Expired:
        """The next item, or :data:`TIMEOUT`."""
        while not self.items:
            if self.expired:
                return TIMEOUT
            self.future = asyncio.get_running_loop().create_future()
            try:
                await self.future
            finally:
                self.future = None
        return self.items.popleft()


class _Connection(asyncio.Protocol):
    """Parses replies and hands each to the listener; reports the end of the connection."""

    def __init__(self, listener: Resp3Listener) -> None:
        loop = asyncio.get_running_loop()
        self.listener = listener
        self.parser = new_parser()
        self.transport: asyncio.Transport | None = None
        self.handshake: list[Any] | None = []  # replies collected until the handshake is done
        self.greeted: asyncio.Future[None] = loop.create_future()  # handshake replies or loss
        self.closed: asyncio.Future[None] = loop.create_future()
        self.heard = True  # something arrived since the last keepalive check

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.heard = True
        self.parser.feed(data)
        while (reply := self.parser.gets()) is not MORE:
            if self.handshake is None:
                self.listener.dispatch(reply)
                continue
            self.handshake.append(reply)
            if len(self.handshake) == HANDSHAKE_REPLIES and not self.greeted.done():
                self.greeted.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for future in (self.greeted, self.closed):
            if not future.done():
                future.set_result(None)
        self.listener.lost(self)


class Resp3Listener:
    """Subscriptions and key reads of every waiter of one backend, on one RESP3 connection."""

    def __init__(self, endpoint: Endpoint, *, backoff: Backoff) -> None:
        self._endpoint = endpoint
        self._backoff = backoff
        self._conn: _Connection | None = None
        self._channels: dict[bytes, list[Watch]] = {}
        self._replies: deque[bytes | None] = deque()  # the key of each pending GET (None: PING)
        self._unsubscribe: set[bytes] = set()
        self._unsubscribe_timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self.unsupported = False
        """The server turned out to have no RESP3: this listener gave up."""

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
        for timer in (self._keepalive, self._unsubscribe_timer):
            if timer is not None:
                timer.cancel()
        conn, self._conn = self._conn, None
        if conn is not None and conn.transport is not None:
            conn.transport.close()

    # -- waiters ----------------------------------------------------------------------------

    def watch(self, key: str) -> Watch:
        """Start waiting on ``key``: subscribe (if new) and read it, in one write."""
        channel = key.encode()
        watch = Watch(channel)
        watchers = self._channels.get(channel)
        if watchers is not None:
            watchers.append(watch)
            self._send(pack("GET", channel), (channel,))
        else:
            self._channels[channel] = [watch]
            self._unsubscribe.discard(channel)
            self._send(pack("SUBSCRIBE", channel) + pack("GET", channel), (channel,))
        return watch

    def unwatch(self, watch: Watch) -> None:
        """Stop waiting; the key is unsubscribed soon after its last waiter left."""
        watchers = self._channels.get(watch.channel)
        if watchers is None or watch not in watchers:
            return
        watchers.remove(watch)
        if not watchers:
            del self._channels[watch.channel]
            if self._conn is None:
                return  # a new connection subscribes only the keys waited on then
            self._unsubscribe.add(watch.channel)
            if self._unsubscribe_timer is None:
                loop = asyncio.get_running_loop()
                self._unsubscribe_timer = loop.call_later(_UNSUBSCRIBE_AFTER, self._flush)

    def _send(self, data: bytes, replies: tuple[bytes | None, ...] = ()) -> None:
        """Write pending UNSUBSCRIBEs and ``data``, whose commands answer ``replies``.

        ``replies`` names, in order, the key of each GET in ``data`` (None for a reply to
        drop). Without a connection nothing is written: the reconnection subscribes and
        reads every key being waited on.
        """
        conn = self._conn
        if conn is None or conn.transport is None:
            return
        if self._unsubscribe:
            data = pack("UNSUBSCRIBE", *self._unsubscribe) + data
            self._unsubscribe.clear()
        if data:
            self._replies.extend(replies)
            conn.transport.write(data)

    def _flush(self) -> None:
        """Send the UNSUBSCRIBEs no other write carried (the timer armed by :meth:`unwatch`).

        The timer is never cancelled by writes: re-arming it for every waiter would cost
        more than one spare wake-up every ``_UNSUBSCRIBE_AFTER`` seconds.
        """
        self._unsubscribe_timer = None
        self._send(b"")

    def dispatch(self, reply: Any) -> None:
        """One reply: a message to its channel's waiters, a GET reply to its key's waiters."""
        if is_push(reply):
            if len(reply) == 3 and reply[0] == b"message":
                for watch in self._channels.get(reply[1], ()):
                    watch.push(reply[2], reply=False)
            return
        if not self._replies:
            logger.warning("redis result listener: unexpected reply %r", reply)
            return
        channel = self._replies.popleft()
        if channel is not None:
            for watch in self._channels.get(channel, ()):
                watch.push(reply, reply=True)

    # -- the connection ---------------------------------------------------------------------

    async def _open(self) -> None:
        """Connect, handshake, then subscribe and read every key being waited on."""
        ep = self._endpoint
        conn = _Connection(self)
        try:
            async with asyncio.timeout(ep.connect_timeout):
                await self._connect(conn)
                assert conn.transport is not None
                conn.transport.write(ep.handshake)
                await conn.greeted
            if conn.transport is None or conn.handshake is None:
                raise ConnectionError(f"{ep} closed the connection during the handshake")
            check_handshake(*conn.handshake)
        except BaseException:
            if conn.transport is not None:
                conn.transport.abort()
            raise
        conn.handshake = None
        self._attach(conn)

    async def _connect(self, conn: _Connection) -> None:
        """Open the transport of ``conn``."""
        ep = self._endpoint
        loop = asyncio.get_running_loop()
        if ep.path:
            await loop.create_unix_connection(lambda: conn, ep.path, ssl=ep.tls)
            return
        hostname = ep.host if ep.tls is not None else None
        transport, _ = await loop.create_connection(
            lambda: conn, ep.host, ep.port, ssl=ep.tls, server_hostname=hostname
        )
        if ep.keepalive:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def _attach(self, conn: _Connection) -> None:
        """Make ``conn`` the connection and re-send every subscription and read."""
        self._conn = conn
        self._replies.clear()
        self._unsubscribe.clear()
        channels = tuple(self._channels)
        if channels:
            reads = b"".join(pack("GET", channel) for channel in channels)
            self._send(pack("SUBSCRIBE", *channels) + reads, channels)
        self._keepalive = asyncio.get_running_loop().call_later(_PING_EVERY, self._check_alive)

    def _check_alive(self) -> None:
        """PING now and then; a connection silent for a whole period is dropped."""
        conn = self._conn
        if conn is None or conn.transport is None:
            return
        if not conn.heard:
            logger.warning("redis result listener: no reply to PING; reconnecting")
            conn.transport.abort()
            return
        conn.heard = False
        self._send(pack("PING"), (None,))
        self._keepalive = asyncio.get_running_loop().call_later(_PING_EVERY, self._check_alive)

    def lost(self, conn: _Connection) -> None:
        """The connection ended: forget it (the supervisor reconnects)."""
        if self._conn is conn:
            self._conn = None
            self._replies.clear()
            if self._keepalive is not None:
                self._keepalive.cancel()

    async def _supervise(self) -> None:
        """Reconnect with backoff whenever the connection ends; never gives up.

        A server found without RESP3 (it was unreachable at :meth:`start`) ends the
        listener: :attr:`unsupported` is set and every watch expires, for its caller to
        wait another way.
        """
        failed = False
        while True:
            conn = self._conn
            if conn is not None:
                await asyncio.shield(conn.closed)
                logger.warning("redis result listener: connection to %s lost", self._endpoint)
            try:
                await self._open()
            except Resp3Unsupported as exc:
                logger.warning("redis result listener: %s; waiting another way", exc)
                self.unsupported = True
                for watch in [w for watchers in self._channels.values() for w in watchers]:
                    watch.expire()
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
