"""Publishing to Redis from the caller's own thread, for the synchronous API.

``task.delay()`` in plain sync code would otherwise hand its publish to the
portal's event loop and block until that thread answers: two thread switches per
call, which cost more than the Redis round trip itself. This publisher runs the
same PUSH script with redis-py's blocking client in the calling thread.

It takes the common case only: messages for the default exchange (Celery's
routing to a queue by name) that are due now. Anything else (named exchanges,
which need their bindings read; countdowns and ETAs, which go to the delayed set;
Sentinel) makes :meth:`BlockingPublisher.publish` return False before touching
Redis, and the caller uses the asyncio transport instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac._redis_url import RedisSettings, parse_redis_url
from celeriac.protocol import kombu
from celeriac.transport import _redis_lua as lua
from celeriac.transport._redis_keys import RedisKeys
from celeriac.transport._redis_leases import NOTIFY_CAP
from celeriac.transport.base import Outgoing

try:
    import redis
    from redis.commands.core import Script
except ImportError:  # pragma: no cover - the asyncio transport reports the missing extra
    redis = None  # type: ignore[assignment]

__all__ = ["BlockingPublisher", "blocking_publisher"]

_MAX_BATCH = 200  # messages per script call, as the asyncio transport's CHUNK


class BlockingPublisher:
    """Runs the PUSH script for default-exchange messages with a blocking client."""

    def __init__(self, settings: RedisSettings) -> None:
        self.keys = RedisKeys(settings.key_prefix)
        self._client = _connect(settings)
        self._push: Script = self._client.register_script(lua.PUSH)

    def publish(self, messages: Sequence[Outgoing]) -> bool:
        """Store ``messages`` and return True, or return False (nothing sent) if not ours."""
        if not messages or len(messages) > _MAX_BATCH or not all(map(_is_plain, messages)):
            return False
        keys: list[str] = []
        payloads: list[bytes] = []
        wake: dict[str, int] = {}
        for msg in messages:
            keys.append(self.keys.bucket(msg.routing_key, msg.envelope.priority))
            payloads.append(_encode(msg))
            wake[msg.routing_key] = wake.get(msg.routing_key, 0) + 1
        keys += [self.keys.notify(queue) for queue in wake]
        self._push(keys=keys, args=[len(payloads), NOTIFY_CAP, *payloads, *wake.values()])
        return True

    def close(self) -> None:
        """Release the connections."""
        self._client.connection_pool.disconnect()


def _is_plain(msg: Outgoing) -> bool:
    """Default exchange, a queue name, due now."""
    due = msg.not_before
    return not msg.exchange and bool(msg.routing_key) and (due is None or due <= time.time())


def _encode(msg: Outgoing) -> bytes:
    return kombu.encode(
        msg.envelope,
        exchange=msg.exchange,
        routing_key=msg.routing_key,
        delivery_tag=str(uuid.uuid4()),
    )


def _connect(settings: RedisSettings) -> redis.Redis[bytes]:
    kwargs = dict(settings.connection)
    connection_class: type[Any] = redis.Connection
    if "path" in kwargs:
        connection_class = redis.UnixDomainSocketConnection
    elif settings.tls:
        connection_class = redis.SSLConnection
    pool = redis.BlockingConnectionPool(
        max_connections=settings.max_connections,
        timeout=int(settings.pool_timeout),
        connection_class=connection_class,
        **kwargs,
    )
    return redis.Redis(connection_pool=pool)


def blocking_publisher(url: str, options: Mapping[str, Any]) -> BlockingPublisher | None:
    """A blocking publisher for ``url``, or None where only the asyncio path works."""
    if redis is None:
        return None
    settings = parse_redis_url(url, dict(options))
    if settings.sentinels:
        return None  # master discovery lives in the asyncio client
    return BlockingPublisher(settings)
