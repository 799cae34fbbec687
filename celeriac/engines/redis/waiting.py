"""Waiting for Redis results: every waiter of a backend on one shared subscribed connection.

Celery's workers ``SET`` a result document, then ``PUBLISH`` it on a channel named like its
key (SPEC §5.2); a waiter subscribes to the channel and reads the key. On a RESP3
connection (``HELLO 3``, Redis 6+) a subscriber may run any command, and Redis runs one
connection's commands in order, so ``SUBSCRIBE key`` + ``GET key`` written together cost
one round trip and miss nothing: a document written before the GET runs is in its reply,
one published after the SUBSCRIBE ran arrives as a push. Pushes are arrays; the other
commands sent here never answer with one, so anything else is the next reply in command
order. A RESP2 subscriber may only (un)subscribe and PING: there a PING follows the
SUBSCRIBE, and once its reply is back the key is read through the pool.

:class:`Subscriptions` holds all of that without I/O: which keys are watched and by how
many waiters, the commands for a new key, replies matched to keys, pushes told from
replies, the handshake, every subscription and read written again on a new connection
(so a write made while nobody listened is read then), and UNSUBSCRIBE, which is never
waited for: it goes with the next write, or a moment after the last waiter left. It
decodes what arrives, so a bad document ends only its own key's wait, never the
connection. Its drivers only move bytes: :class:`Listener` on the event loop (an
:class:`asyncio.Protocol`, no reader task, no per-reply timeout; futures per task id in a
:class:`~celeriac.backends.waiting.Waiters`), and
:class:`~celeriac.engines.redis.blocking.BlockingListener` in the calling thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from celeriac.backends.base import Meta
from celeriac.backends.waiting import Waiters
from celeriac.engines.redis.connection import Endpoint, Resp3Unsupported, check_handshake, pack
from celeriac.exceptions import MissingDependency
from celeriac.retry import Backoff
from celeriac.states import READY_STATES

try:
    import hiredis
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis result backend: pip install 'celeriac[redis]'") from exc

__all__ = [
    "MORE",
    "PING_EVERY",
    "TASK_KEY",
    "UNSUBSCRIBE_AFTER",
    "ProtocolError",
    "Decode",
    "Item",
    "Listener",
    "Subscriptions",
    "Watched",
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
Decode = Callable[[str, Item], Meta | None]
"""Reads the document in an item of a key (None: none there); raises for a bad one."""

_HANDSHAKE_REPLIES: Final = 2  # HELLO's and SELECT's


def new_parser() -> hiredis.Reader:
    """A reply parser: error replies come back as exception objects, never raised."""
    return hiredis.Reader(notEnoughData=MORE)


def is_push(reply: Any) -> bool:
    """A push message (pub/sub), as opposed to the reply to the oldest pending command."""
    return isinstance(reply, list)


class Watched:
    """What is known about one key while anyone waits for it."""

    __slots__ = ("answered", "channel", "key", "latest", "outcome", "task_id", "waiters")

    def __init__(self, task_id: str, key: str) -> None:
        self.task_id = task_id
        self.key = key
        self.channel = key.encode()
        self.waiters = 0
        self.latest: Meta | None = None
        """The last document seen."""
        self.outcome: Meta | Exception | None = None
        """What ends the wait: a ready document, or the error reading one."""
        self.answered = False
        """Whether a read of the key came back (so ``latest`` is the key's state)."""

    def result(self) -> Meta | None:
        """The ready document, else the latest one; raises the error that ended the wait."""
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome if self.outcome is not None else self.latest


class Subscriptions:
    """The state of one connection carrying result waits, without its I/O.

    Methods return the bytes to write (nothing while there is no connection:
    :meth:`connect` writes everything then). With ``inline_reads`` (RESP3) a key's GET
    follows its SUBSCRIBE. Without (RESP2) a PING does, whose reply comes once the
    subscription is in place: :meth:`receive` then hands the key back, unended, for the
    driver to read it elsewhere and give the reply to :meth:`take`.
    """

    def __init__(self, key_prefix: str, decode: Decode, *, inline_reads: bool) -> None:
        self.prefix = key_prefix + TASK_KEY
        self.inline_reads = inline_reads
        self.connected = False
        self.watched: dict[bytes, Watched] = {}
        self._decode = decode
        self._replies: deque[bytes | None] = deque()  # the key of each read (None: a PING)
        self._unsubscribe: set[bytes] = set()
        self._parser = new_parser()
        self._greeting: list[Any] | None = None
        self._expected = 0  # replies the handshake gets

    # -- waiters ----------------------------------------------------------------------------

    def add(self, task_id: str) -> tuple[Watched, bytes]:
        """One more waiter for ``task_id``: its record, and the commands to write now."""
        key = self.prefix + task_id
        channel = key.encode()
        watched = self.watched.get(channel)
        new = watched is None
        if watched is None:
            watched = self.watched[channel] = Watched(task_id, key)
            self._unsubscribe.discard(channel)
        watched.waiters += 1
        if not self.connected:
            return watched, b""
        data = self._read((channel,))
        return watched, self._out(pack("SUBSCRIBE", channel) + data if new else data)

    def remove(self, watched: Watched) -> bool:
        """One waiter left; True when an UNSUBSCRIBE now waits for :meth:`flush`."""
        watched.waiters -= 1
        if watched.waiters or self.watched.get(watched.channel) is not watched:
            return False
        del self.watched[watched.channel]
        if not self.connected:
            return False  # a new connection subscribes only the keys watched then
        self._unsubscribe.add(watched.channel)
        return True

    def flush(self) -> bytes:
        """The UNSUBSCRIBEs no other write carried."""
        return self._out(b"")

    # -- the connection ---------------------------------------------------------------------

    def open(self, endpoint: Endpoint) -> bytes:
        """A new connection to ``endpoint``: the handshake to write first (RESP3's, or
        RESP2's without ``inline_reads``); parsing starts afresh with its replies."""
        self._parser = new_parser()
        self._greeting = []
        if self.inline_reads:
            self._expected = _HANDSHAKE_REPLIES
            return endpoint.handshake
        data, self._expected = endpoint.fallback
        return data

    @property
    def greeted(self) -> bool:
        """Whether the handshake's replies all arrived (and said yes)."""
        return self._greeting is None

    def connect(self) -> bytes:
        """The connection is ready: the commands subscribing and reading every watched key."""
        self.connected = True
        self._replies.clear()
        self._unsubscribe.clear()
        channels = tuple(self.watched)
        return pack("SUBSCRIBE", *channels) + self._read(channels) if channels else b""

    def disconnect(self) -> None:
        """The connection ended (the server forgets its subscriptions)."""
        self.connected = False
        self._replies.clear()
        self._unsubscribe.clear()

    def ping(self) -> bytes:
        """A PING, whose reply is dropped."""
        if not self.connected:
            return b""
        self._replies.append(None)
        return self._out(pack("PING"))

    def feed(self, data: bytes) -> list[Watched]:
        """Bytes read off the connection: the keys whose wait they ended (or, RESP2, to read).

        Raises :class:`ProtocolError` for bytes that are not RESP, and what
        :func:`~celeriac.engines.redis.connection.check_handshake` raises.
        """
        self._parser.feed(data)
        ended: list[Watched] = []
        while (reply := self._parser.gets()) is not MORE:
            if self._greeting is None:
                if (watched := self.receive(reply)) is not None:
                    ended.append(watched)
                continue
            self._greeting.append(reply)
            if len(self._greeting) == self._expected:
                check_handshake(*self._greeting, resp3=self.inline_reads)
                self._greeting = None
        return ended

    def receive(self, reply: Any) -> Watched | None:
        """One parsed reply: the key whose wait it ended, or (RESP2) the key to read now."""
        if isinstance(reply, list):  # a push (is_push, inlined: this runs for every reply)
            if len(reply) == 3 and reply[0] == b"message":
                watched = self.watched.get(reply[1])
                if watched is not None and self.take(watched, reply[2], reply=False):
                    return watched
                return None
            if reply[:1] != [b"pong"]:
                return None  # a (un)subscribe confirmation; a RESP2 PING's reply goes on
        if not self._replies:
            logger.warning("redis result listener: unexpected reply %r", reply)
            return None
        channel = self._replies.popleft()
        watched = self.watched.get(channel) if channel is not None else None
        if watched is None or watched.outcome is not None:
            return None
        if not self.inline_reads or self.take(watched, reply, reply=True):
            return watched
        return None

    def take(self, watched: Watched, item: Item, *, reply: bool) -> bool:
        """Fold an item into ``watched``; True when it ended the wait."""
        if watched.outcome is not None:
            return False
        watched.answered = watched.answered or reply
        try:
            doc = self._decode(watched.key, item)
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

    def _read(self, channels: tuple[bytes, ...]) -> bytes:
        """A GET of each key (RESP2: a PING, whose reply says the key may be read now)."""
        self._replies.extend(channels)
        if self.inline_reads:
            return b"".join([pack("GET", channel) for channel in channels])
        return pack("PING") * len(channels)

    def _out(self, data: bytes) -> bytes:
        """``data`` after the pending UNSUBSCRIBEs (nothing without a connection)."""
        if not self.connected:
            return b""
        if self._unsubscribe:
            data = pack("UNSUBSCRIBE", *self._unsubscribe) + data
            self._unsubscribe.clear()
        return data


def _expire(future: asyncio.Future[Watched], watched: Watched) -> None:
    """A wait's timeout: wake it with its record as it stands."""
    if not future.done():
        future.set_result(watched)


class _Wire(asyncio.Protocol):
    """The listener's transport: bytes go to the listener, the end is reported."""

    def __init__(self, listener: Listener) -> None:
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


class Listener:
    """Every waiter of one backend on one subscribed connection, driven from the event loop.

    ``locate()`` says where to connect (Sentinel asks for the master each time). A server
    that refuses ``HELLO 3`` turns the listener to RESP2 for good: then ``read(key)``
    reads each key through the backend's pool, once it is subscribed.
    """

    def __init__(
        self,
        locate: Callable[[], Awaitable[Endpoint]],
        subs: Subscriptions,
        backoff: Backoff,
        read: Callable[[str], Awaitable[bytes | None]],
    ) -> None:
        self._locate = locate
        self._subs = subs
        self._backoff = backoff
        self._read = read
        self._waiters: Waiters[Watched] = Waiters()
        self._wire: _Wire | None = None
        self._flush_timer: asyncio.TimerHandle | None = None
        self._keepalive: asyncio.TimerHandle | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._reads: set[asyncio.Task[None]] = set()

    @property
    def resp3(self) -> bool:
        """Whether keys are read on the connection itself (RESP3), not through the pool."""
        return self._subs.inline_reads

    async def start(self) -> None:
        """Connect, and keep reconnecting in the background whenever the connection ends.

        When Redis cannot be reached now, returns anyway: waiters wait meanwhile.
        """
        try:
            await self._open()
        except Exception as exc:  # unreachable now: the supervisor keeps trying
            logger.warning("redis result listener: %r; reconnecting in the background", exc)
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def close(self) -> None:
        """Stop reconnecting and close the connection."""
        tasks = [t for t in (self._supervisor, *self._reads) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._supervisor = None
        for timer in (self._keepalive, self._flush_timer):
            if timer is not None:
                timer.cancel()
        wire, self._wire = self._wire, None
        if wire is not None and wire.transport is not None:
            wire.transport.close()

    # -- waiters ----------------------------------------------------------------------------

    async def wait(self, task_id: str, timeout: float | None) -> Watched:
        """Wait until the wait for ``task_id`` ended or ``timeout`` passed; the record
        says how (:meth:`Watched.result`, :attr:`Watched.answered`)."""
        loop = asyncio.get_running_loop()
        future = self._waiters.add(task_id)
        watched, data = self._subs.add(task_id)
        # A timer rather than asyncio.timeout(): the same, a few µs cheaper per wait.
        timer = None if timeout is None else loop.call_later(timeout, _expire, future, watched)
        try:
            self._write(data)
            if watched.outcome is None:
                await future
        finally:
            if timer is not None:
                timer.cancel()
            self._waiters.discard(task_id, future)
            if self._subs.remove(watched) and self._flush_timer is None:
                # Never cancelled by other writes: re-arming it per waiter would cost more
                # than a spare wake-up every UNSUBSCRIBE_AFTER seconds.
                self._flush_timer = loop.call_later(UNSUBSCRIBE_AFTER, self._flush)
        return watched

    def _flush(self) -> None:
        self._flush_timer = None
        self._write(self._subs.flush())

    def _write(self, data: bytes) -> None:
        wire = self._wire
        if data and wire is not None and wire.transport is not None:
            wire.transport.write(data)

    def _ended(self, watched: Watched) -> None:
        """Wake the waiters of a key whose wait ended (if it is still watched)."""
        if self._subs.watched.get(watched.channel) is watched:
            self._waiters.resolve(watched.task_id, watched)

    def _read_soon(self, watched: Watched) -> None:
        task = asyncio.get_running_loop().create_task(self._read_key(watched))
        self._reads.add(task)
        task.add_done_callback(self._reads.discard)

    async def _read_key(self, watched: Watched) -> None:
        """RESP2: read a key through the pool; the reply goes into its record."""
        try:
            item: Item = await self._read(watched.key)
        except Exception as exc:  # e.g. ConnectionError after the backend's retries
            if watched.outcome is None:
                watched.outcome = exc
                self._ended(watched)
            return
        if self._subs.take(watched, item, reply=True):
            self._ended(watched)

    # -- the connection ---------------------------------------------------------------------

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
            if watched.outcome is None:
                self._read_soon(watched)  # RESP2: subscribed, so read it now
            else:
                self._ended(watched)

    def lost(self, wire: _Wire) -> None:
        """The connection ended: forget it (the supervisor reconnects)."""
        if self._wire is wire:
            self._wire = None
            self._subs.disconnect()
            if self._keepalive is not None:
                self._keepalive.cancel()

    async def _open(self) -> None:
        """Connect (in RESP2 from now on if HELLO 3 is refused), subscribe, read."""
        try:
            await self._connect()
        except Resp3Unsupported as exc:
            logger.info("redis result listener: %s; waiting with RESP2 pub/sub", exc)
            self._subs.inline_reads = False
            await self._connect()

    async def _connect(self) -> None:
        """Connect and handshake, then subscribe and read every watched key."""
        endpoint = await self._locate()
        wire = _Wire(self)
        try:
            async with asyncio.timeout(endpoint.connect_timeout):
                await endpoint.connect(wire)
                assert wire.transport is not None
                wire.transport.write(self._subs.open(endpoint))
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
        """Reconnect with backoff whenever the connection ends; never gives up."""
        failed = False
        while True:
            wire = self._wire
            if wire is not None:
                await asyncio.shield(wire.closed)
                logger.warning("redis result listener: connection lost")
            try:
                await self._open()
            except Exception as exc:  # any failure: a listener must never stay down
                delay = self._backoff.next()
                logger.warning("redis result listener: %r; reconnecting in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                failed = True
                continue
            if failed:
                logger.warning("redis result listener: reconnected")
            failed = False
            self._backoff.reset()
