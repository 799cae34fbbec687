"""The Redis result backend, in Celery's key layout (SPEC §5.2, §5.3).

* ``celery-task-meta-<id>``: the result document, encoded with the configured serializer,
  written with ``SETEX result_expires`` (``SET`` when ``expires`` is None) and ``PUBLISH``ed
  on the channel of the same name, a whole :meth:`~RedisBackend.store` batch in one MULTI.
* :meth:`~RedisBackend.wait` subscribes and reads the key in one round trip on one shared
  RESP3 connection per instance (:mod:`celeriac.engines.redis.waiting`), so no write is
  missed; no polling. Where the server has no RESP3 (Redis before 6) it subscribes in
  RESP2 and reads the key through the pool once the subscription is in place.
* ``celery-taskset-meta-<gid>``: a saved group, ``{"result": [[gid, null], [[[tid, null],
  null], ...]]}``.
* Chord counters ``celery-taskset-meta-<gid>.j/.s/.t/.d/.c`` updated by one Lua script, as
  Celery 5.7 does: ``.j`` holds ``[1, tid, state, result]`` scored by group index, ``.d``
  dedupes ``<tid>:<index>``, ``.s`` is the size (:meth:`~RedisBackend.set_chord_size`, as
  Celery's client writes it, or the caller's ``size`` when absent), ``.t``
  Celery's size adjustment; the completing call gets the parts, the keys are deleted and
  ``.c`` becomes ``done`` so any later report (a redelivered task) is ignored.

Documents written by Celery read back as they are (``date_done`` stays the ISO string
Celery wrote, naive in Celery 5.3). A key holding bytes that do not decode to a document
makes :meth:`~RedisBackend.get` (and ``wait``) raise :class:`SerializationError` naming the
key; the shared listener is not affected.

Options: those of :mod:`celeriac.engines.redis.connection` (``global_keyprefix`` prefixes keys and
channels), plus ``max_retries`` and ``retry_backoff_max`` for transient connection errors,
after which calls raise :class:`ConnectionError`, and ``retry_on_timeout`` (Celery's
``redis_retry_on_timeout``; default True): False raises a timeout at once instead.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar, cast

from celeriac.backends.base import ChordPart, Meta
from celeriac.engines.options import option_flag
from celeriac.engines.redis.connection import (
    TIMEOUTS,
    UNREACHABLE,
    connect_redis,
    locator,
    pack,
    parse_redis_url,
    release,
    retried,
    retry_policy,
)
from celeriac.engines.redis.publishing import AsyncPusher
from celeriac.engines.redis.waiting import TASK_KEY, Item, Listener, Subscriptions
from celeriac.exceptions import MissingDependency, SerializationError
from celeriac.protocol.serializers import Serializer

try:
    from redis import exceptions as redis_errors
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("Redis result backend: pip install 'celeriac[redis]'") from exc

__all__ = ["LAST_LOOK", "RedisBackend", "decode_document", "get_reply"]

T = TypeVar("T")

_DONE_TTL = 86400
LAST_LOOK = 0.05
"""Seconds the read at a wait's timeout may take (``get(timeout=)`` overshoots by no more)."""

STORE_BATCH = """
-- SET (with Celery's expiry) and PUBLISH every document of a batch, in one call.
-- ARGV: expiry mode ('' / 'EX' / 'PX'), expiry, then one document per key.
local mode, ttl = ARGV[1], ARGV[2]
for i = 1, #KEYS do
  local doc = ARGV[2 + i]
  if mode == '' then
    redis.call('SET', KEYS[i], doc)
  else
    redis.call('SET', KEYS[i], doc, mode, ttl)
  end
  redis.call('PUBLISH', KEYS[i], doc)
end
return #KEYS
"""

CHORD_PART = """
-- KEYS: .j .t .s .d .c
-- ARGV: member, index, dedupe id, size ('' = only a stored one), ttl ('' = none), done ttl
if redis.call('EXISTS', KEYS[5]) == 1 then return false end
if redis.call('SADD', KEYS[4], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
end
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[4], 'NX') end
if ARGV[5] ~= '' then
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[5]) end
end
local size = redis.call('GET', KEYS[3])
if not size then return false end
local total = tonumber(size) + tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('ZCARD', KEYS[1]) < total then return false end
local parts = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], 'done', 'EX', ARGV[6])
return parts
"""


class RedisBackend:
    """A ResultBackend on Redis, readable and writable by Celery peers."""

    supports_chords = True
    replies = None  # results are stored by task id
    reply_queue = None

    def __init__(
        self,
        url: str,
        *,
        serializer: Serializer,
        expires: float | None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        opts = dict(options or {})
        self.url = url
        self.serializer = serializer
        self.expires = expires
        self._settings = parse_redis_url(url, opts, store="results")
        prefix = self._settings.key_prefix
        self._task_prefix = prefix + TASK_KEY
        self._group_prefix = prefix + "celery-taskset-meta-"
        self.retry = retry_policy(opts)
        self._fatal = () if option_flag(opts.get("retry_on_timeout", True)) else TIMEOUTS
        self._client: Redis[bytes] | None = None
        self._listener: Listener | None = None
        self._listener_lock = asyncio.Lock()
        self._chord_script: AsyncScript | None = None
        self._store_script: AsyncScript | None = None
        self._pusher: AsyncPusher | None = None
        """Sends the store script on the event loop without redis-py's command layer."""

    @property
    def client(self) -> Redis[bytes]:
        """The connected client; raises if :meth:`connect` was not awaited."""
        if self._client is None:
            raise RuntimeError("RedisBackend used before connect()")
        return self._client

    async def connect(self) -> None:
        """Create the connection pool and check that Redis answers (retrying)."""
        if self._client is not None:
            return
        client = connect_redis(self._settings)
        try:
            await self._retry("connect", client.ping)
        except BaseException:
            await release(client)
            raise
        self._client = client
        self._chord_script = client.register_script(CHORD_PART)
        self._store_script = client.register_script(STORE_BATCH)
        if not self._settings.cluster:  # the pusher writes to one server's connections
            self._pusher = AsyncPusher(
                client.connection_pool,
                self._settings.max_connections,
                self._settings.pool_timeout,
                self._settings.connection.get("socket_timeout"),
            )

    async def close(self) -> None:
        """Stop the listener and release connections."""
        client, listener, pusher = self._client, self._listener, self._pusher
        self._client = self._listener = self._pusher = None
        if listener is not None:
            await listener.close()
        if pusher is not None:
            await pusher.close()
        if client is not None:
            await release(client)

    def _retry(self, what: str, op: Callable[[], Awaitable[T]]) -> Coroutine[Any, Any, T]:
        """Run ``op``, retrying transient errors with backoff; then raise ConnectionError."""
        return retried(
            self.retry, UNREACHABLE, f"redis result backend: {what}", op, self._fatal, self.url
        )

    def _key(self, task_id: str) -> str:
        return self._task_prefix + task_id

    def _set(self, pipe: Any, key: str, data: bytes) -> None:
        """SET with expiry (Celery's SETEX) then PUBLISH on the key's channel, as Celery does."""
        if self.expires is None:
            pipe.set(key, data)
        elif float(self.expires).is_integer():
            pipe.set(key, data, ex=int(self.expires))
        else:
            pipe.set(key, data, px=max(int(self.expires * 1000), 1))
        pipe.publish(key, data)

    # -- documents --------------------------------------------------------------------------

    def _expiry_args(self) -> list[str | int]:
        """Expiry as SET arguments: Celery's whole seconds (EX), milliseconds if fractional."""
        if self.expires is None:
            return ["", 0]
        if float(self.expires).is_integer():
            return ["EX", int(self.expires)]
        return ["PX", max(int(self.expires * 1000), 1)]

    async def store(self, items: Sequence[tuple[str, Meta]]) -> None:
        """Write and publish documents (SET with expiry + PUBLISH each, as Celery does).

        The whole batch is one script call: one round trip, atomic like a MULTI, and far
        less client-side work per document than a pipeline of two commands each.
        """
        if not items:
            return
        keys = [self._key(tid) for tid, _ in items]
        args: list[Any] = [*self._expiry_args(), *(self.serializer.dumps(m) for _, m in items)]
        script = self._store_script
        if script is None:
            raise RuntimeError("RedisBackend is not connected; call connect() first")
        await self._retry("store", lambda: self._run(script, keys, args))

    async def _run(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """``script`` in one round trip, through the pusher when there is one (a lone task's
        result is on its caller's critical path: redis-py's command layer costs more than
        the round trip); redis-py loads a script the server lost."""
        pusher = self._pusher
        if pusher is not None:
            sha = cast(Any, script).sha  # (redis-py's stubs do not declare it)
            [reply] = await pusher.call(pack("EVALSHA", sha, len(keys), *keys, *args), 1)
            if not isinstance(reply, redis_errors.NoScriptError):
                if isinstance(reply, redis_errors.ResponseError):
                    raise reply
                return reply
        return await script(keys=keys, args=args)

    async def get(self, task_ids: Sequence[str]) -> list[Meta | None]:
        """MGET the documents; None where nothing is stored."""
        if not task_ids:
            return []
        keys = [self._key(tid) for tid in task_ids]
        values = await self._retry("get", lambda: self.client.mget(keys))
        return [
            None if v is None else self._decode(k, v) for k, v in zip(keys, values, strict=True)
        ]

    def _decode(self, key: str, data: bytes) -> Meta:
        """A stored or published document; SerializationError naming ``key`` if it is bad."""
        return decode_document(key, data, self.serializer)

    async def wait(self, task_id: str, timeout: float | None) -> Meta | None:
        """Return the document once ready, or the latest one at ``timeout``."""
        if timeout is not None and timeout <= 0:
            return await self._last_look(task_id)
        watched = await (self._listener or await self._start_listener()).wait(task_id, timeout)
        if watched.outcome is None and not watched.answered:
            return await self._last_look(task_id)  # no connection in time: read through the pool
        return watched.result()

    async def _last_look(self, task_id: str) -> Meta | None:
        """One read at a wait's timeout, bounded by :data:`LAST_LOOK` and not retried, so
        that the timeout holds (None when Redis cannot answer that fast)."""
        key = self._key(task_id)
        try:
            async with asyncio.timeout(LAST_LOOK):
                values = await self.client.mget([key])
        except (*UNREACHABLE, TimeoutError):
            return None
        return None if values[0] is None else self._decode(key, values[0])

    async def _start_listener(self) -> Listener:
        """The one listener of this backend, started on first use."""
        async with self._listener_lock:
            if self._listener is None:
                decode = functools.partial(get_reply, serializer=self.serializer)
                subs = Subscriptions(self._settings.key_prefix, decode, inline_reads=True)
                locate = locator(self._settings)
                listener = Listener(locate, subs, self.retry.backoff(), self._read_raw)
                await listener.start()
                self._listener = listener
            return self._listener

    async def _read_raw(self, key: str) -> bytes | None:
        """One key's stored bytes (MGET: a key of another type reads as None)."""
        values = await self._retry("get", lambda: self.client.mget([key]))
        value: bytes | None = values[0]
        return value

    async def forget(self, task_ids: Sequence[str]) -> None:
        """Delete documents."""
        if task_ids:
            keys = [self._key(tid) for tid in task_ids]
            await self._retry("forget", lambda: self.client.delete(*keys))

    # -- groups and chords ------------------------------------------------------------------

    async def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Store ``celery-taskset-meta-<gid>`` as Celery's ``GroupResult.save()`` does."""
        doc = {"result": [[group_id, None], [[[tid, None], None] for tid in task_ids]]}
        data = self.serializer.dumps(doc)
        key = self._group_prefix + group_id

        async def op() -> None:
            pipe = self.client.pipeline(transaction=True)
            self._set(pipe, key, data)
            await pipe.execute()

        await self._retry("save_group", op)

    async def restore_group(self, group_id: str) -> list[str] | None:
        """Member ids of a saved group, or None."""
        key = self._group_prefix + group_id
        data = await self._retry("restore_group", lambda: self.client.get(key))
        if data is None:
            return None
        doc = self._decode(key, data)
        try:
            members = doc["result"][1]
            return [str(member[0][0]) for member in members]
        except (KeyError, IndexError, TypeError) as exc:
            raise SerializationError(f"group key {key!r} is not a saved group: {exc}") from exc

    async def forget_group(self, group_id: str) -> None:
        """Delete a saved group."""
        key = self._group_prefix + group_id
        await self._retry("forget_group", lambda: self.client.delete(key))

    async def set_chord_size(self, group_id: str, size: int) -> None:
        """Store ``.s`` (and clear an old ``.c`` done mark) as Celery 5.7's client does."""
        base = self._group_prefix + group_id

        async def op() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(f"{base}.c")
            if self.expires is None:
                pipe.set(f"{base}.s", size)
            else:
                pipe.set(f"{base}.s", size, ex=max(int(self.expires), 1))
            await pipe.execute()

        await self._retry("set_chord_size", op)

    async def add_to_chord(self, group_id: str, count: int) -> int:
        """``INCRBY .t`` as Celery does; the new size (``.s`` + ``.t``)."""
        base = self._group_prefix + group_id

        async def op() -> list[Any]:
            pipe = self.client.pipeline(transaction=True)
            pipe.incrby(f"{base}.t", count)
            if self.expires is not None:
                pipe.expire(f"{base}.t", max(int(self.expires), 1))
            pipe.get(f"{base}.s")
            replies: list[Any] = await pipe.execute()
            return replies

        replies = await self._retry("add_to_chord", op)
        return int(replies[0]) + int(replies[-1] or 0)

    async def chord_part_done(
        self, group_id: str, index: int, part: ChordPart, size: int | None
    ) -> list[ChordPart] | None:
        """Record one header result atomically; the completing call gets all parts, once.

        The size stored in ``.s`` wins; ``size`` is stored there only when none is.
        """
        script = self._chord_script
        if script is None:
            raise RuntimeError("RedisBackend used before connect()")
        task_id, state, result = part
        base = self._group_prefix + group_id
        keys = [f"{base}.j", f"{base}.t", f"{base}.s", f"{base}.d", f"{base}.c"]
        ttl = "" if self.expires is None else str(max(int(self.expires), 1))
        done_ttl = max(int(self.expires or _DONE_TTL), 300)
        member = self.serializer.dumps([1, task_id, state, result])
        wanted = "" if size is None else size
        args: list[Any] = [member, index, f"{task_id}:{index}", wanted, ttl, done_ttl]
        reply = await self._retry("chord_part_done", lambda: script(keys=keys, args=args))
        if reply is None:
            return None
        return [self._chord_part(keys[0], raw) for raw in reply]

    def _chord_part(self, key: str, raw: bytes) -> ChordPart:
        """Decode one ``[1, tid, state, result]`` member of ``.j``."""
        try:
            _, task_id, state, result = self.serializer.loads(raw)
        except (SerializationError, ValueError, TypeError) as exc:
            raise SerializationError(f"chord key {key!r} holds a bad part: {exc}") from exc
        return (str(task_id), str(state), result)

    async def cleanup(self) -> int:
        """Nothing to do: Redis expires keys itself."""
        return 0


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
