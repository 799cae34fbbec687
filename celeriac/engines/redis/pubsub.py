"""One shared pub/sub connection per Redis result backend, demultiplexed to waiters.

Celery's workers ``PUBLISH`` every result document on a channel named like its key
(SPEC §5.2). A waiter registers for a channel; the first waiter of a channel sends
``SUBSCRIBE``, the last one to leave sends ``UNSUBSCRIBE``. A waiter learns when its
subscription is confirmed (so it can then ``GET`` the key and miss nothing): confirmations
arrive in the order subscriptions were sent, so per channel we count subscriptions sent and
confirmations received. After a reconnection every channel is subscribed again and each
waiter gets :data:`RECHECK`, telling it to read its key again (a write may have happened
while nobody listened).

Published payloads are handed to waiters undecoded: a payload that cannot be decoded is the
waiter's problem, never the listener's.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Final

from celeriac.exceptions import MissingDependency
from celeriac.retry import Backoff

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis result backend: pip install 'celeriac[redis]'") from exc

__all__ = ["RECHECK", "ResultListener", "Waiter"]

logger = logging.getLogger("celeriac.engines.redis.results")

RECHECK: Final = b"\x00celeriac-recheck"
"""Put in a waiter's queue after a reconnection: read the key again."""

_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
_PING_EVERY = 15.0


@dataclass(eq=False)
class _Channel:
    """Subscription state of one channel: its waiters and whether it is confirmed."""

    waiters: set[Waiter] = field(default_factory=set)
    target: int = 0  # confirmations needed on this connection before it is "ready"
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    recheck: bool = False


@dataclass(eq=False)
class Waiter:
    """One ``wait()`` call: published payloads of its channel arrive in ``queue``."""

    channel: str
    state: _Channel
    queue: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    async def subscribed(self) -> None:
        """Return once the channel's subscription is confirmed by Redis."""
        await self.state.ready.wait()


class ResultListener:
    """A dedicated pub/sub connection shared by all waiters of one backend instance."""

    def __init__(self, client: Redis[bytes], *, backoff: Backoff) -> None:
        self._client = client
        self._backoff = backoff
        self._conn: AbstractConnection | None = None
        self._channels: dict[str, _Channel] = {}
        self._sent: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    async def add(self, channel: str) -> Waiter:
        """Register a waiter for ``channel`` (subscribing if it is the first)."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._run())
        state = self._channels.get(channel)
        first = state is None
        if state is None:
            state = self._channels[channel] = _Channel()
        waiter = Waiter(channel, state)
        state.waiters.add(waiter)
        if first:
            try:
                async with self._lock:
                    if self._conn is not None and self._channels.get(channel) is state:
                        await self._subscribe(channel, state)
            except _ERRORS as exc:  # the reader reconnects and subscribes every channel
                logger.debug("redis result listener: subscribe failed: %s", exc)
        return waiter

    def remove(self, waiter: Waiter) -> None:
        """Unregister a waiter (synchronous, so it is safe in ``finally`` of a cancelled task)."""
        state = waiter.state
        state.waiters.discard(waiter)
        if not state.waiters and self._channels.get(waiter.channel) is state:
            del self._channels[waiter.channel]
            task = asyncio.get_running_loop().create_task(self._unsubscribe(waiter.channel))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Stop listening and drop the connection."""
        tasks = [t for t in (self._reader, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reader = None
        await self._drop_connection()

    async def _subscribe(self, channel: str, state: _Channel) -> None:
        """Send SUBSCRIBE (caller holds the lock) and note which confirmation means ready."""
        assert self._conn is not None
        self._sent[channel] = self._sent.get(channel, 0) + 1
        state.target = self._sent[channel]
        await self._conn.send_command("SUBSCRIBE", channel)

    async def _unsubscribe(self, channel: str) -> None:
        """Send UNSUBSCRIBE unless a new waiter arrived for the channel meanwhile."""
        try:
            async with self._lock:
                if self._conn is not None and channel not in self._channels:
                    await self._conn.send_command("UNSUBSCRIBE", channel)
        except _ERRORS as exc:  # the reader notices and reconnects
            logger.debug("redis result listener: unsubscribe failed: %s", exc)

    async def _run(self) -> None:
        """Reader task: (re)connect, (re)subscribe, dispatch messages; never gives up."""
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
                if isinstance(exc, _ERRORS):
                    logger.warning("redis result listener: %s; reconnecting in %.2fs", exc, delay)
                else:
                    logger.exception("redis result listener: unexpected error; reconnecting")
                await self._drop_connection()
                await asyncio.sleep(delay)
                failed = True

    async def _connect(self) -> None:
        """Open a dedicated connection (outside the pool) and subscribe every channel."""
        pool = self._client.connection_pool
        # No health checks on this connection: a PING reply would be read by our reader.
        conn = pool.connection_class(**{**pool.connection_kwargs, "health_check_interval": 0})
        await conn.connect()
        async with self._lock:
            self._conn = conn
            self._sent.clear()
            self._acked.clear()
            for channel, state in self._channels.items():
                await self._subscribe(channel, state)

    async def _drop_connection(self) -> None:
        """Forget the connection; every channel needs a new confirmation and a recheck."""
        conn, self._conn = self._conn, None
        for state in self._channels.values():
            state.ready.clear()
            state.recheck = True
        if conn is not None:
            await conn.disconnect()

    async def _read_forever(self) -> None:
        """Dispatch replies; PING when idle and treat two silent periods as a dead link."""
        awaiting_pong = False
        while True:
            conn = self._conn
            if conn is None:
                raise redis_errors.ConnectionError("pub/sub connection lost")
            response = await conn.read_response(timeout=_PING_EVERY)
            if response is None:
                if awaiting_pong:
                    raise redis_errors.TimeoutError("no reply to PING on the pub/sub connection")
                async with self._lock:
                    await conn.send_command("PING")
                awaiting_pong = True
                continue
            awaiting_pong = False
            self._dispatch(response)

    def _dispatch(self, response: Any) -> None:
        """Route one pub/sub reply: a message to its waiters, a confirmation to its channel."""
        if not isinstance(response, list) or len(response) < 3:
            return
        kind = response[0]
        channel = response[1].decode() if isinstance(response[1], bytes) else str(response[1])
        if kind == b"message":
            state = self._channels.get(channel)
            for waiter in list(state.waiters) if state else ():
                waiter.queue.put_nowait(response[2])
        elif kind == b"subscribe":
            self._acked[channel] = self._acked.get(channel, 0) + 1
            state = self._channels.get(channel)
            if state is not None and self._acked[channel] >= state.target:
                state.ready.set()
                if state.recheck:
                    state.recheck = False
                    for waiter in state.waiters:
                        waiter.queue.put_nowait(RECHECK)
        if channel not in self._channels and self._acked.get(channel) == self._sent.get(channel):
            self._acked.pop(channel, None)
            self._sent.pop(channel, None)
