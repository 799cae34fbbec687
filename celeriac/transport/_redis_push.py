"""The PUSH script call that stores published messages, packed and sent here.

Every publish ends in one PUSH call (see :data:`celeriac.transport._redis_lua.PUSH`), and
redis-py's command layer costs more than the rest of the publish: its asyncio client packs
arguments in Python (~4 µs per 700-byte message) and wraps each send in
``asyncio.wait_for`` (a Task and extra event-loop turns per call on Python 3.11); both of
its pools record metrics and poll the socket on every checkout, a system call that costs
tens of µs on a small VM. So the call is packed here in one join (:func:`pack`) and sent
on connections kept by :class:`BlockingPusher` / :class:`AsyncPusher`. They are redis-py
connections made exactly as the client's pool makes them (URL, auth, db, TLS, Unix socket,
Sentinel master discovery, health checks) and they still read and parse the replies.
As redis-py's pools do, a reused connection is first checked for a close by the server
while it sat idle (a restart, an idle timeout), and then reconnected instead of failing.

The pushers bound their connections by ``max_connections`` (waiting ``pool_timeout`` for
a free one, as redis-py's blocking pool does). A connection that failed mid-call is
disconnected before it is reused, so no half-read reply is ever left on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from redis import exceptions as redis_errors

from celeriac.transport import _redis_lua as lua
from celeriac.transport._redis_keys import RedisKeys
from celeriac.transport._redis_leases import NOTIFY_CAP

__all__ = ["PUSH_SHA", "AsyncPusher", "BlockingPusher", "pack", "push_call"]

PUSH_SHA = hashlib.sha1(lua.PUSH.encode()).hexdigest()
_PUSH = lua.PUSH.encode()


def push_call(
    keys: RedisKeys, pushes: Sequence[tuple[str, bytes]], wake: Mapping[str, int]
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the PUSH script: messages grouped by list (in order), then tokens.

    One ``LPUSH`` of many values per list is far cheaper for Redis than one per message,
    and each list key is sent once instead of once per message.
    """
    groups: dict[str, list[bytes]] = {}
    for key, payload in pushes:
        group = groups.get(key)
        if group is None:
            groups[key] = [payload]
        else:
            group.append(payload)
    script_keys = [*groups, *(keys.notify(q) for q in wake)]
    args: list[Any] = [len(groups), NOTIFY_CAP, *map(len, groups.values())]
    for payloads in groups.values():
        args += payloads
    args += wake.values()
    return script_keys, args


def pack(*args: bytes | str | int) -> bytes:
    """One Redis command in RESP, built with a single join (strings as UTF-8)."""
    parts = [b"*%d\r\n" % len(args)]
    append = parts.append
    for arg in args:
        data = arg if type(arg) is bytes else str(arg).encode()
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(parts)


def _evalsha(keys: list[str], args: list[Any]) -> bytes:
    return pack("EVALSHA", PUSH_SHA, len(keys), *keys, *args)


def _eval(keys: list[str], args: list[Any]) -> bytes:
    """The same call with the script's text, which also loads it (after NOSCRIPT)."""
    return pack("EVAL", _PUSH, len(keys), *keys, *args)


class BlockingPusher:
    """Runs PUSH calls from the calling thread on connections kept in a stack.

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

    def push(self, keys: list[str], args: list[Any]) -> None:
        """Store the messages (see :func:`push_call`); raise redis-py's errors on failure."""
        command = _evalsha(keys, args)
        conn = self._checkout()
        try:
            if _stale_blocking(conn):
                conn.disconnect()  # closed by the server while idle: connect afresh
            conn.connect()  # no-op when connected; Sentinel connections resolve the master here
            _call_blocking(conn, command, keys, args)
        except redis_errors.ResponseError:
            raise  # the error reply was read: the connection is fine
        except BaseException:
            conn.disconnect()  # maybe half-sent or half-read: reconnect on next use
            raise
        finally:
            self._idle.append(conn)

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


_CLOSED = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


def _stale_blocking(conn: Any) -> bool:
    """Whether an idle connection was closed by the server (or holds stray data)."""
    try:
        return bool(conn.can_read(timeout=0))
    except _CLOSED:
        return True


def _call_blocking(conn: Any, command: bytes, keys: list[str], args: list[Any]) -> None:
    conn.send_packed_command([command])
    try:
        conn.read_response()
    except redis_errors.NoScriptError:  # the script did not run: load it with EVAL
        conn.send_packed_command([_eval(keys, args)])
        conn.read_response()


class AsyncPusher:
    """Runs PUSH calls on the event loop, without a Task per send.

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

    async def push(self, keys: list[str], args: list[Any]) -> None:
        """Store the messages (see :func:`push_call`); raise redis-py's errors on failure."""
        command = _evalsha(keys, args)
        conn = self._idle.pop() if self._idle else await self._checkout()
        try:
            if conn.is_connected and await _stale_async(conn):
                await conn.disconnect()  # closed by the server while idle: connect afresh
            if not conn.is_connected:
                await conn.connect()  # (a Sentinel connection resolves the master only here)
            async with asyncio.timeout(self._socket_timeout):
                await _call_async(conn, command, keys, args)
        except redis_errors.ResponseError:
            raise  # the error reply was read: the connection is fine
        except BaseException:
            await conn.disconnect(nowait=True)  # maybe half-sent or half-read
            raise
        finally:
            self._idle.append(conn)

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


async def _call_async(conn: Any, command: bytes, keys: list[str], args: list[Any]) -> None:
    await conn.send_packed_command(command)
    try:
        await conn.read_response()
    except redis_errors.NoScriptError:  # the script did not run: load it with EVAL
        await conn.send_packed_command(_eval(keys, args))
        await conn.read_response()
