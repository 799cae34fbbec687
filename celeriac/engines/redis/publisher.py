"""Publishing to Redis from the caller's own thread, for the synchronous API.

``task.delay()`` in plain sync code would otherwise hand its publish to the
portal's event loop and block until that thread answers: two thread switches per
call, which cost more than the Redis round trip itself. This publisher runs the
same commands in the calling thread (see :mod:`celeriac.engines.redis.push`).

It takes the common case only: messages for the default exchange (Celery's
routing to a queue by name) that are due now. Anything else (named exchanges,
which need their bindings read; countdowns and ETAs, which go to the delayed set;
Sentinel) makes :meth:`RedisBlockingPublisher.publish` return False before touching
Redis, and the caller uses the asyncio transport instead.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from celeriac.engines.redis.broker import PUSH_LIMIT, encode_copy
from celeriac.engines.redis.connection import RedisSettings, connect_redis_blocking, parse_redis_url
from celeriac.engines.redis.keys import RedisKeys
from celeriac.engines.redis.push import BlockingPusher, push_of
from celeriac.transport.base import Outgoing

__all__ = ["RedisBlockingPublisher", "blocking_publisher"]


class RedisBlockingPublisher:
    """Stores default-exchange messages from the calling thread."""

    def __init__(self, settings: RedisSettings) -> None:
        self.keys = RedisKeys(settings.key_prefix)
        self._client = connect_redis_blocking(settings)
        self._pusher = BlockingPusher(
            self._client.connection_pool, settings.max_connections, settings.pool_timeout
        )

    def publish(self, messages: Sequence[Outgoing]) -> bool:
        """Store ``messages`` and return True, or return False (nothing sent) if not ours."""
        if not messages or len(messages) > PUSH_LIMIT or not all(map(_is_plain, messages)):
            return False
        pushes: list[tuple[str, bytes]] = []
        wake: dict[str, int] = {}
        for msg in messages:
            key = self.keys.bucket(msg.routing_key, msg.envelope.priority)
            pushes.append((key, encode_copy(msg)))
            wake[msg.routing_key] = wake.get(msg.routing_key, 0) + 1
        self._pusher.push(push_of(self.keys, pushes, wake))
        return True

    def close(self) -> None:
        """Release the connections."""
        self._pusher.close()
        self._client.connection_pool.disconnect()


def _is_plain(msg: Outgoing) -> bool:
    """Default exchange, a queue name, due now."""
    due = msg.not_before
    return not msg.exchange and bool(msg.routing_key) and (due is None or due <= time.time())


def blocking_publisher(url: str, options: Mapping[str, Any]) -> RedisBlockingPublisher | None:
    """A blocking publisher for ``url``, or None where only the asyncio path works."""
    settings = parse_redis_url(url, dict(options))
    if settings.sentinels:
        return None  # master discovery lives in the asyncio client
    return RedisBlockingPublisher(settings)
