"""Storing published messages: the commands, packed and sent here rather than by redis-py.

A publish is one round trip of plain commands: one ``LPUSH`` of all its messages per list
(what one ``LPUSH`` per message would leave, in the same order), then for each queue the
wake-up tokens waiting consumers ``BLPOP`` (``LPUSH`` up to the cap, ``LTRIM`` to the cap,
``EXPIRE``, as the Lua scripts do where they push tokens). Messages for more than one list
go inside ``MULTI``/``EXEC``, so a publish is stored whole or not at all and a retry never
duplicates part of it; a single ``LPUSH`` is atomic by itself. No Lua: a script would copy
every message once more inside Redis (~3 µs per message in a batch, ~15 µs per call).

redis-py's command layer costs more than building the message: its asyncio client packs
arguments in Python (~4 µs per 700-byte message) and wraps each send in
``asyncio.wait_for`` (a Task and extra event-loop turns per call on Python 3.11); both of
its pools record metrics on every checkout. So the commands are packed here in one join
(:func:`pack`) and sent on connections kept by :class:`BlockingPusher` /
:class:`AsyncPusher`. They are redis-py connections made exactly as the client's pool
makes them (URL, auth, db, TLS, Unix socket, Sentinel master discovery, health checks),
which still parse the replies. As redis-py's pools do, a reused connection is first
checked for a close by the server while it sat idle (a restart, an idle timeout) and
reconnected then; one that failed mid-call is disconnected before it is used again. At
most ``max_connections`` are opened; a caller waits ``pool_timeout`` for a free one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors

from celeriac.engines.redis.connection import pack
from celeriac.engines.redis.keys import RedisKeys
from celeriac.engines.redis.leases import NOTIFY_CAP

__all__ = [
    "NOTIFY_TTL",
    "AsyncPusher",
    "BlockingPusher",
    "Push",
    "push_commands",
    "push_of",
]

NOTIFY_TTL = 60
"""Seconds a wake-up token list lives after its last push (as in the Lua scripts)."""

Command = tuple[Any, ...]


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
    """The packed :class:`Push` of :func:`push_commands`."""
    commands, lists = push_commands(keys, pushes, wake)
    return Push(commands, transaction=lists > 1)


_CLOSED = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


class BlockingPusher:
    """Sends pushes from the calling thread on connections kept in a stack.

    A free connection is popped without a lock (list ``pop``/``append`` are atomic);
    only creating one takes a lock, and a caller finding all ``max_connections`` busy
    polls for one (rare: it needs that many threads publishing at the same moment).
    """

    def __init__(self, pool: Any, max_connections: int, timeout: float) -> None:
        self._connection_class = pool.connection_class
        self._connection_kwargs = dict(pool.connection_kwargs)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._created = 0
        self._max = max_connections
        self._timeout = timeout

    def push(self, push: Push) -> None:
        """Store one publish; raise redis-py's errors on failure."""
        conn = self._checkout()
        try:
            if _stale_blocking(conn):
                conn.disconnect()  # closed by the server while idle: connect afresh
            conn.connect()  # no-op when connected; Sentinel connections resolve the master here
            conn.send_packed_command([push.data])
            replies = [_reply_blocking(conn) for _ in range(push.replies)]
        except BaseException:
            conn.disconnect()  # maybe half-sent or half-read: reconnect on next use
            raise
        finally:
            self._idle.append(conn)
        push.check(replies)

    def _checkout(self) -> Any:
        deadline = None
        while True:
            try:
                return self._idle.pop()
            except IndexError:
                pass
            with self._lock:
                if self._created < self._max:
                    self._created += 1
                    return self._connection_class(**self._connection_kwargs)
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
    except _CLOSED:
        return True


def _reply_blocking(conn: Any) -> Any:
    """One reply; an error reply is returned, so that every reply is read off the socket."""
    try:
        return conn.read_response()
    except redis_errors.ResponseError as exc:
        return exc


class AsyncPusher:
    """Sends pushes on the event loop, without a Task per send.

    Its connections have no socket timeout of their own: each call runs under one
    ``asyncio.timeout`` of the configured ``socket_timeout`` instead, which redis-py would
    otherwise implement with ``asyncio.wait_for`` around every write. Connections are
    kept as :class:`BlockingPusher` keeps them (no lock: one event loop uses them).
    """

    def __init__(
        self, pool: Any, max_connections: int, timeout: float, socket_timeout: float | None
    ) -> None:
        self._connection_class = pool.connection_class
        self._connection_kwargs = {**pool.connection_kwargs, "socket_timeout": None}
        self._idle: list[Any] = []
        self._created = 0
        self._max = max_connections
        self._timeout = timeout
        self._socket_timeout = socket_timeout

    async def push(self, push: Push) -> None:
        """Store one publish; raise redis-py's errors on failure."""
        conn = self._idle.pop() if self._idle else await self._checkout()
        try:
            if conn.is_connected and await _stale_async(conn):
                await conn.disconnect()  # closed by the server while idle: connect afresh
            async with asyncio.timeout(self._socket_timeout):
                if not conn.is_connected:
                    await conn.connect()  # (a Sentinel connection resolves the master here)
                await conn.send_packed_command(push.data)
                replies = [await _reply_async(conn) for _ in range(push.replies)]
        except BaseException:
            await conn.disconnect(nowait=True)  # maybe half-sent or half-read
            raise
        finally:
            self._idle.append(conn)
        push.check(replies)

    async def _checkout(self) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while not self._idle:
            if self._created < self._max:
                self._created += 1
                return self._connection_class(**self._connection_kwargs)
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
    except _CLOSED:
        return True


async def _reply_async(conn: Any) -> Any:
    """One reply; an error reply is returned, so that every reply is read off the socket."""
    try:
        return await conn.read_response()
    except redis_errors.ResponseError as exc:
        return exc
