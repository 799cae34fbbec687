"""The sync API's calling-thread paths on Redis: waiting for a result without the portal.

``AsyncResult.get()`` in plain sync code would otherwise hand its wait to the portal's
event loop and block until that thread answers: two thread switches per call, which cost
more than the Redis round trip itself.

The waiter drives the same :class:`~celeriac.engines.redis.waiting.Subscriptions` as the
asyncio listener (``SUBSCRIBE`` + ``GET`` in one write, replies matched in command order),
on a blocking socket. One connection per process and result backend serves every thread.
The threads take turns reading it: a waiting thread that finds nobody reading becomes the
reader and hands every reply to the keys it belongs to; once its own wait ended, or its
deadline passed, it passes the read side to another waiting thread. A lone caller so reads
its own replies, with no thread switch at all. UNSUBSCRIBE goes out with the next write, or
from the portal's loop a moment later when nothing else is written.

This is a fast path, never the only one: when it cannot serve a call (no connection to
Redis right now, a server without RESP3) it raises :class:`~celeriac.backends.base.Unavailable`
and the caller waits through the portal instead, where the asyncio backend reconnects and
retries. A connection lost mid-wait is reopened by the next reader, which subscribes and
reads every key again. TLS (an SSL socket must not be read and written by two threads at
once) and Sentinel locations get no blocking waiter at all.
"""

from __future__ import annotations

import functools
import logging
import select
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from celeriac._portal import get_portal
from celeriac.backends.base import Meta, Unavailable
from celeriac.engines.redis.connection import (
    Endpoint,
    Resp3Unsupported,
    endpoint_for,
    parse_redis_url,
)
from celeriac.engines.redis.results import get_reply
from celeriac.engines.redis.waiting import (
    PING_EVERY,
    UNSUBSCRIBE_AFTER,
    ProtocolError,
    Subscriptions,
    Watched,
)
from celeriac.protocol.serializers import Serializer

__all__ = ["BlockingListener", "BlockingResultWaiter", "blocking_waiter"]

logger = logging.getLogger("celeriac.engines.redis.results")

_READ_SIZE = 65536
_RETRY_AFTER = 1.0  # after a failed connection, calls go through the portal for this long


class BlockingListener:
    """One RESP3 connection shared by the waiting threads of a process.

    Every use of the :class:`Subscriptions` holds the lock, except the parsing of the
    handshake by the thread that connects (nobody else parses while there is no socket).
    """

    def __init__(self, endpoint: Endpoint, subs: Subscriptions) -> None:
        self._endpoint = endpoint
        self._subs = subs
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._janitor = False  # an UNSUBSCRIBE flush is scheduled on the portal
        self._reading = False  # a thread owns the read side (and connects when needed)
        self._waiting: dict[threading.Event, Watched] = {}  # threads waiting for items or a turn
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

    def watch(self, task_id: str) -> Watched:
        """Start waiting on ``task_id``: subscribe (if new) and read it, in one write.

        Without a connection the key is only registered: the thread that connects
        subscribes and reads every watched key.
        """
        with self._lock:
            quiet = time.monotonic() - self._heard > PING_EVERY
            if quiet and self._sock is not None and not self._ping_sent:
                self._ping()  # idle for long: check that the link still works
            watched, data = self._subs.add(task_id)
            self._send(data)
        return watched

    def unwatch(self, watched: Watched) -> None:
        """Stop waiting; the key is unsubscribed soon after its last waiter left."""
        with self._lock:
            if self._subs.remove(watched) and not self._janitor:
                self._janitor = True
                loop = get_portal().loop
                loop.call_soon_threadsafe(loop.call_later, UNSUBSCRIBE_AFTER, self._flush)

    def wait(self, watched: Watched, deadline: float | None) -> None:
        """Return once the wait for ``watched`` ended or ``deadline`` passed.

        Raises :class:`Unavailable` when there is no connection and none can be made now.
        """
        event = threading.Event()
        while True:
            with self._lock:
                self._waiting.pop(event, None)
                left = _left(deadline)
                if watched.outcome is not None or (left is not None and left <= 0):
                    self._pass_turn()
                    return
                lead = not self._reading
                if lead:
                    self._reading = True
                else:
                    event.clear()
                    self._waiting[event] = watched
            if lead:
                self._lead(watched, deadline)
            else:
                self._follow(event, left)

    def _lead(self, watched: Watched, deadline: float | None) -> None:
        """Take the read side until the wait for ``watched`` ended (connecting if needed)."""
        try:
            sock = self._sock or self._connect(deadline)
            self._read_until(sock, watched, deadline)
        finally:
            with self._lock:
                self._reading = False
                self._pass_turn()

    def _follow(self, event: threading.Event, left: float | None) -> None:
        """Sleep until this thread's wait ended, the read side is offered, or ``left`` passed."""
        try:
            event.wait(left)
        except BaseException:  # an interrupted follower must not keep its turn to read
            with self._lock:
                self._waiting.pop(event, None)
                self._pass_turn()
            raise

    def _pass_turn(self) -> None:
        """If nobody reads, wake a waiting thread (caller holds the lock).

        The woken thread reads, or returns (its wait ended or timed out) and passes the
        turn on in turn: as long as a thread waits, one of them reads.
        """
        if not self._reading and self._waiting:
            event, _ = self._waiting.popitem()
            event.set()

    # -- reading (only the thread on the read side) -------------------------------------------

    def _read_until(self, sock: socket.socket, watched: Watched, deadline: float | None) -> None:
        """Read and dispatch replies until the wait for ``watched`` ended, ``deadline``
        passed or ``sock`` is no longer the connection."""
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        while watched.outcome is None and self._sock is sock:
            left = _left(deadline)
            if left is not None and left <= 0:
                return
            if not poller.poll(PING_EVERY * 1000 if left is None else min(left, PING_EVERY) * 1000):
                with self._lock:
                    if time.monotonic() - self._heard >= PING_EVERY:
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
                self._received(sock, data)

    def _received(self, sock: socket.socket, data: bytes) -> None:
        """Hand what arrived to the keys it belongs to; wake threads whose wait ended."""
        self._heard, self._ping_sent = time.monotonic(), 0.0
        try:
            ended = self._subs.feed(data)
        except ProtocolError as exc:  # the stream is garbled: start afresh
            logger.warning("redis result waiter: %r; reconnecting", exc)
            self._drop(sock)
            return
        if ended:
            for event, waiting in list(self._waiting.items()):
                if waiting.outcome is not None:
                    del self._waiting[event]
                    event.set()

    def _check_alive(self, sock: socket.socket) -> None:
        """Nothing arrived for a while: PING, or drop a link that did not answer one."""
        if not self._ping_sent:
            self._ping()
        elif time.monotonic() - self._ping_sent >= PING_EVERY:
            logger.warning("redis result waiter: no reply to PING; dropping the connection")
            self._drop(sock)

    def _ping(self) -> None:
        self._ping_sent = time.monotonic()
        self._send(self._subs.ping())

    # -- connecting (only the thread on the read side) ----------------------------------------

    def _connect(self, deadline: float | None) -> socket.socket:
        """Open the connection, then subscribe and read every watched key."""
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
            self._sock = sock
            self._heard, self._ping_sent = time.monotonic(), 0.0
            self._send(self._subs.connect())
        return sock

    def _open(self) -> socket.socket:
        """A connected socket that completed the RESP3 handshake."""
        sock = self._endpoint.open_socket()
        try:
            sock.sendall(self._subs.open(self._endpoint))
            while not self._subs.greeted:
                data = sock.recv(_READ_SIZE)
                if not data:
                    raise ConnectionError(f"{self._endpoint} closed the connection")
                self._subs.feed(data)
            sock.settimeout(self._endpoint.write_timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    # -- writing (with the lock held) ---------------------------------------------------------

    def _send(self, data: bytes) -> None:
        """Write ``data`` on the connection, if there is one."""
        sock = self._sock
        if sock is None or not data:
            return
        try:
            sock.sendall(data)
        except OSError as exc:
            logger.warning("redis result waiter: write failed (%s)", exc)
            self._drop(sock)

    def _flush(self) -> None:
        """Send pending UNSUBSCRIBEs (runs on the portal's loop when nothing else wrote)."""
        with self._lock:
            self._janitor = False
            self._send(self._subs.flush())

    def _drop(self, sock: socket.socket | None) -> None:
        """Close ``sock`` if it is still the connection; the reader notices and reconnects."""
        if sock is None or self._sock is not sock:
            return
        self._sock = None
        self._subs.disconnect()
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's poll
        except OSError:
            pass
        sock.close()


class BlockingResultWaiter:
    """``wait(task_id, timeout)`` for the sync API, on a :class:`BlockingListener`."""

    def __init__(self, endpoint: Endpoint, key_prefix: str, serializer: Serializer) -> None:
        decode = functools.partial(get_reply, serializer=serializer)
        subs = Subscriptions(key_prefix, decode, inline_reads=True)
        self.listener = BlockingListener(endpoint, subs)

    def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """The document once ready, or the latest one at ``timeout`` (None if none).

        Raises :class:`Unavailable` (having consumed part of the timeout, which it reports)
        when the calling thread cannot wait here.
        """
        listener = self.listener
        if listener.unsupported or listener.closed:
            raise Unavailable("no RESP3 connection", timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        watched = listener.watch(task_id)
        try:
            listener.wait(watched, deadline)
        finally:
            listener.unwatch(watched)
        if watched.outcome is None and not watched.answered:
            raise Unavailable("no reply before the timeout", 0.0)
        return watched.result()

    def close(self) -> None:
        """Close the connection."""
        self.listener.close()


def blocking_waiter(
    url: str, *, serializer: Serializer, options: Mapping[str, Any]
) -> BlockingResultWaiter | None:
    """A calling-thread waiter for ``url``, or None where only the portal can wait."""
    settings = parse_redis_url(url, dict(options), store="results")
    endpoint = endpoint_for(settings)
    if endpoint is None or endpoint.tls is not None:
        return None
    return BlockingResultWaiter(endpoint, settings.key_prefix, serializer)


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (None: no deadline)."""
    return None if deadline is None else deadline - time.monotonic()
