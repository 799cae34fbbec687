"""Waiting for Redis results from the caller's own thread, for the synchronous API.

``AsyncResult.get()`` in plain sync code would otherwise hand its wait to the portal's
event loop and block until that thread answers: two thread switches per call, which cost
more than the Redis round trip itself. This waiter speaks the same RESP3 protocol as
:mod:`celeriac.engines.redis.listen` (``SUBSCRIBE`` + ``GET`` in one write, replies
matched in command order; :mod:`celeriac.engines.redis.resp3` says why nothing is missed) on a
blocking socket, from the calling thread.

One connection per process and result backend serves every thread. The threads take turns
reading it: a waiting thread that finds nobody reading becomes the reader and hands every
reply to the waiter it belongs to; once its own result came, or its deadline passed, it
passes the read side to another waiting thread. A lone caller so reads its own replies,
with no thread switch at all. UNSUBSCRIBE is never waited for: it goes out with the next
write, or from the portal's loop a moment later when nothing else is written.

This is a fast path, never the only one: when it cannot serve a call (no connection to
Redis right now, a server without RESP3) it raises :class:`~celeriac.backends.base.Unavailable`
and the caller waits through the portal instead, where the asyncio backend reconnects and
retries. A connection lost mid-wait is reopened by the next reader, which subscribes and
reads every key again, as the asyncio listener does. TLS (an SSL socket must not be read
and written by two threads at once) and Sentinel locations get no blocking waiter at all.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from celeriac._portal import get_portal
from celeriac.backends.base import Meta, Unavailable
from celeriac.engines.redis.connection import parse_redis_url
from celeriac.engines.redis.resp3 import (
    HANDSHAKE_REPLIES,
    MORE,
    TIMEOUT,
    Endpoint,
    Expired,
    Item,
    ProtocolError,
    Resp3Unsupported,
    check_handshake,
    endpoint_for,
    is_push,
    new_parser,
    pack,
)
from celeriac.engines.redis.results import get_reply
from celeriac.protocol.serializers import Serializer
from celeriac.states import READY_STATES

__all__ = ["BlockingListener", "BlockingResultWaiter", "blocking_waiter"]

logger = logging.getLogger("celeriac.engines.redis.results")

_PING_EVERY = 15.0
_READ_SIZE = 65536
_UNSUBSCRIBE_AFTER = 0.1
_RETRY_AFTER = 1.0  # after a failed connection, calls go through the portal for this long


class _Watch:
    """One waiting thread's key: its GET replies and its channel's messages, in order."""

    __slots__ = ("answered", "channel", "event", "items")

    def __init__(self, channel: bytes) -> None:
        self.channel = channel
        self.items: deque[Item] = deque()
        self.event = threading.Event()
        self.answered = False


class BlockingListener:
    """One RESP3 connection shared by the waiting threads of a process."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._parser = new_parser()
        self._channels: dict[bytes, list[_Watch]] = {}
        self._replies: deque[bytes | None] = deque()  # the key of each pending GET (None: PING)
        self._unsubscribe: set[bytes] = set()
        self._janitor = False  # an UNSUBSCRIBE flush is scheduled on the portal
        self._reading = False  # a thread owns the read side (and connects when needed)
        self._waiting: set[_Watch] = set()  # watches whose thread waits for items or its turn
        self._heard = 0.0  # when bytes last arrived
        self._ping_sent = 0.0  # when the unanswered PING was sent (0: none)
        self._retry_at = 0.0  # no new connection attempt before this time
        self.unsupported = False
        """The server has no RESP3: every call must wait through the portal."""
        self.closed = False

    def close(self) -> None:
        """Close the connection for good (threads waiting now get Unavailable)."""
        with self._lock:
            self.closed = True
            self._drop(self._sock)

    # -- waiters ----------------------------------------------------------------------------

    def watch(self, key: str) -> _Watch:
        """Start waiting on ``key``: subscribe (if new) and read it, in one write.

        Without a connection the key is only registered: the thread that connects
        subscribes and reads every registered key.
        """
        channel = key.encode()
        watch = _Watch(channel)
        with self._lock:
            watchers = self._channels.get(channel)
            data = pack("GET", channel)
            if watchers is not None:
                watchers.append(watch)
            else:
                self._channels[channel] = [watch]
                self._unsubscribe.discard(channel)
                data = pack("SUBSCRIBE", channel) + data
            quiet = time.monotonic() - self._heard > _PING_EVERY
            if quiet and self._sock is not None and not self._ping_sent:
                data = self._ping() + data  # idle for long: check that the link still works
            self._send(data, (channel,))
        return watch

    def unwatch(self, watch: _Watch) -> None:
        """Stop waiting; the key is unsubscribed soon after its last waiter left."""
        with self._lock:
            self._waiting.discard(watch)
            watchers = self._channels.get(watch.channel)
            if watchers is None or watch not in watchers:
                return
            watchers.remove(watch)
            if watchers:
                return
            del self._channels[watch.channel]
            if self._sock is None:
                return  # a new connection subscribes only the keys waited on then
            self._unsubscribe.add(watch.channel)
            if not self._janitor:
                self._janitor = True
                loop = get_portal().loop
                loop.call_soon_threadsafe(loop.call_later, _UNSUBSCRIBE_AFTER, self._flush)

    def next(self, watch: _Watch, deadline: float | None) -> Item | Expired:
        """The next item for ``watch`` (a GET reply or a message), or ``TIMEOUT``.

        Raises :class:`Unavailable` when there is no connection and none can be made now.
        """
        while True:
            with self._lock:
                self._waiting.discard(watch)
                left = _left(deadline)
                if watch.items or (left is not None and left <= 0):
                    self._pass_turn()
                    return watch.items.popleft() if watch.items else TIMEOUT
                lead = not self._reading
                if lead:
                    self._reading = True
                else:
                    watch.event.clear()
                    self._waiting.add(watch)
            if lead:
                self._lead(watch, deadline)
            else:
                self._follow(watch, left)

    def _lead(self, watch: _Watch, deadline: float | None) -> None:
        """Take the read side until ``watch`` has an item (connecting if needed)."""
        try:
            sock = self._sock or self._connect(deadline)
            self._read_until(sock, watch, deadline)
        finally:
            with self._lock:
                self._reading = False
                self._pass_turn()

    def _follow(self, watch: _Watch, left: float | None) -> None:
        """Sleep until ``watch`` has an item, the read side is offered, or ``left`` passed."""
        try:
            watch.event.wait(left)
        except BaseException:  # an interrupted follower must not keep its turn to read
            with self._lock:
                self._waiting.discard(watch)
                self._pass_turn()
            raise

    def _pass_turn(self) -> None:
        """If nobody reads, wake a waiting thread (caller holds the lock).

        The woken thread reads, or returns its item (or times out) and passes the turn on
        in turn: as long as a thread waits, one of them reads.
        """
        if not self._reading and self._waiting:
            self._waiting.pop().event.set()

    # -- reading (only the thread on the read side) -------------------------------------------

    def _read_until(self, sock: socket.socket, watch: _Watch, deadline: float | None) -> None:
        """Read and dispatch replies until ``watch`` has an item, ``deadline`` passed or
        ``sock`` is no longer the connection."""
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while not watch.items and self._sock is sock:
            left = _left(deadline)
            if left is not None and left <= 0:
                return
            if not poller.poll(
                _PING_EVERY * 1000 if left is None else min(left, _PING_EVERY) * 1000
            ):
                with self._lock:
                    if time.monotonic() - self._heard >= _PING_EVERY:
                        self._check_alive(sock)
                continue
            try:
                data = sock.recv(_READ_SIZE)
            except OSError as exc:
                data, reason = b"", str(exc)
            else:
                reason = "closed by the server"
            with self._lock:
                if not data:
                    if self._sock is sock:
                        logger.warning("redis result waiter: connection lost (%s)", reason)
                    self._drop(sock)
                    return
                self._heard, self._ping_sent = time.monotonic(), 0.0
                self._parser.feed(data)
                try:
                    self._dispatch_all()
                except ProtocolError as exc:  # the stream is garbled: start afresh
                    logger.warning("redis result waiter: %r; reconnecting", exc)
                    self._drop(sock)
                    return

    def _dispatch_all(self) -> None:
        """Hand every parsed reply to its waiters (caller holds the lock)."""
        while (reply := self._parser.gets()) is not MORE:
            if is_push(reply):
                if len(reply) == 3 and reply[0] == b"message":
                    for watch in self._channels.get(reply[1], ()):
                        _deliver(watch, reply[2], reply=False)
                continue
            channel = self._replies.popleft() if self._replies else None
            if channel is not None:
                for watch in self._channels.get(channel, ()):
                    _deliver(watch, reply, reply=True)

    def _check_alive(self, sock: socket.socket) -> None:
        """Nothing arrived for a while: PING, or drop a link that did not answer one."""
        if not self._ping_sent:
            self._send(self._ping(), ())
        elif time.monotonic() - self._ping_sent >= _PING_EVERY:
            logger.warning("redis result waiter: no reply to PING; dropping the connection")
            self._drop(sock)

    def _ping(self) -> bytes:
        """A PING whose reply is dropped; the caller writes it before anything else."""
        self._ping_sent = time.monotonic()
        self._replies.append(None)
        return pack("PING")

    # -- connecting (only the thread on the read side) ----------------------------------------

    def _connect(self, deadline: float | None) -> socket.socket:
        """Open the connection, then subscribe and read every registered key."""
        if self.unsupported or self.closed or time.monotonic() < self._retry_at:
            raise Unavailable("no connection to Redis", _left(deadline))
        try:
            sock = self._open()
        except Resp3Unsupported as exc:
            logger.info("redis result waiter: %s; sync waits go through the portal", exc)
            self.unsupported = True
            raise Unavailable(str(exc), _left(deadline)) from exc
        except Exception as exc:  # refused, timed out, garbled: the portal's path retries
            self._retry_at = time.monotonic() + _RETRY_AFTER
            raise Unavailable(f"cannot connect: {exc!r}", _left(deadline)) from exc
        with self._lock:
            self._sock, self._parser = sock, new_parser()
            self._replies.clear()
            self._unsubscribe.clear()
            self._heard, self._ping_sent = time.monotonic(), 0.0
            channels = tuple(self._channels)
            if channels:
                reads = b"".join(pack("GET", channel) for channel in channels)
                self._send(pack("SUBSCRIBE", *channels) + reads, channels)
        return sock

    def _open(self) -> socket.socket:
        """A connected socket that completed the RESP3 handshake."""
        sock = self._endpoint.open_socket()
        try:
            sock.sendall(self._endpoint.handshake)
            parser, replies = new_parser(), list[Any]()
            while len(replies) < HANDSHAKE_REPLIES:
                data = sock.recv(_READ_SIZE)
                if not data:
                    raise ConnectionError(f"{self._endpoint} closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not MORE:
                    replies.append(reply)
            check_handshake(*replies[:HANDSHAKE_REPLIES])
            sock.settimeout(self._endpoint.write_timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- writing (with the lock held) ---------------------------------------------------------

    def _send(self, data: bytes, replies: tuple[bytes | None, ...]) -> None:
        """Write pending UNSUBSCRIBEs and ``data``, whose GETs answer ``replies``."""
        sock = self._sock
        if sock is None:
            return
        if self._unsubscribe:
            data = pack("UNSUBSCRIBE", *self._unsubscribe) + data
            self._unsubscribe.clear()
        if not data:
            return
        self._replies.extend(replies)
        try:
            sock.sendall(data)
        except OSError as exc:
            logger.warning("redis result waiter: write failed (%s)", exc)
            self._drop(sock)

    def _flush(self) -> None:
        """Send pending UNSUBSCRIBEs (runs on the portal's loop when nothing else wrote)."""
        with self._lock:
            self._janitor = False
            self._send(b"", ())

    def _drop(self, sock: socket.socket | None) -> None:
        """Close ``sock`` if it is still the connection; the reader notices and reconnects."""
        if sock is None or self._sock is not sock:
            return
        self._sock = None
        self._replies.clear()
        self._unsubscribe.clear()  # the server forgets the connection's subscriptions
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's poll
        except OSError:
            pass
        sock.close()


def _deliver(watch: _Watch, item: Item, *, reply: bool) -> None:
    """Give ``item`` to ``watch`` and wake its thread."""
    watch.answered = watch.answered or reply
    watch.items.append(item)
    watch.event.set()


class BlockingResultWaiter:
    """``wait(task_id, timeout)`` for the sync API, on a :class:`BlockingListener`."""

    def __init__(self, endpoint: Endpoint, key_prefix: str, serializer: Serializer) -> None:
        self._prefix = key_prefix + "celery-task-meta-"
        self._serializer = serializer
        self.listener = BlockingListener(endpoint)

    def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """The document once ready, or the latest one at ``timeout`` (None if none).

        Raises :class:`Unavailable` (having consumed part of the timeout, which it reports)
        when the calling thread cannot wait here.
        """
        listener = self.listener
        if listener.unsupported or listener.closed:
            raise Unavailable("no RESP3 connection", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        key = self._prefix + task_id
        watch = listener.watch(key)
        latest: Meta | None = None
        try:
            while (item := listener.next(watch, deadline)) is not TIMEOUT:
                doc = get_reply(key, item, self._serializer)
                if doc is not None:
                    latest = doc
                    if doc.get("status") in READY_STATES:
                        return doc
            if not watch.answered:
                raise Unavailable("no reply before the timeout", 0.0)
            return latest
        finally:
            listener.unwatch(watch)

    def close(self) -> None:
        """Close the connection."""
        self.listener.close()


def blocking_waiter(
    url: str, *, serializer: Serializer, options: Mapping[str, Any]
) -> BlockingResultWaiter | None:
    """A calling-thread waiter for ``url``, or None where only the portal can wait."""
    settings = parse_redis_url(url, dict(options))
    endpoint = endpoint_for(settings)
    if endpoint is None or endpoint.tls is not None:
        return None
    return BlockingResultWaiter(endpoint, settings.key_prefix, serializer)


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (None: no deadline)."""
    return None if deadline is None else deadline - time.monotonic()
