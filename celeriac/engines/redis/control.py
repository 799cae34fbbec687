"""Receiving broadcasts on Redis: kombu's fanout pub/sub channel.

kombu broadcasts a message for a fanout exchange with ``PUBLISH`` on the channel
``<key prefix>/<db>.<exchange>[/<routing key>]`` (its defaults ``fanout_prefix`` and
``fanout_patterns``) and its subscribers ``PSUBSCRIBE`` to that name, a routing key's
``#`` turned into Redis' ``*``. Celery's workers read ``celery.pidbox`` this way, and
Celery's clients broadcast only there, so a celeriac subscriber does the same: its own
pub/sub connection, kombu envelopes decoded as the broker decodes queued ones.

Pub/sub keeps nothing: a message broadcast while the subscriber is disconnected is
lost, as it is for Celery's workers. A lost connection is logged once per outage and
retried on the next :meth:`RedisSubscription.receive`, which re-subscribes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from celeriac.control.fanout import SubscriptionSpec
from celeriac.engines.redis.connection import (
    TRANSIENT_ERRORS,
    connect_redis,
    parse_redis_url,
    release,
)
from celeriac.engines.redis.publishing import fanout_channel
from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope

__all__ = ["RedisSubscription"]

logger = logging.getLogger(__name__)

RETRY_PAUSE = 0.5
"""Seconds between attempts to re-subscribe after the connection was lost."""


class RedisSubscription:
    """A ``PSUBSCRIBE`` to kombu's channel of one fanout exchange."""

    def __init__(self, url: str, options: Mapping[str, Any], spec: SubscriptionSpec) -> None:
        self.spec = spec
        self._settings = parse_redis_url(url, dict(options))
        self.channel = fanout_channel(
            self._settings.key_prefix,
            self._settings.db,
            spec.exchange,
            spec.routing_key.replace("#", "*"),
        )
        self._client: Any = None
        self._pubsub: Any = None
        self._failing = False

    async def open(self) -> None:
        """Connect and subscribe."""
        self._client = connect_redis(self._settings)
        self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.psubscribe(self.channel)

    async def receive(self, timeout: float) -> list[Envelope]:
        """The messages published since the last call, waiting up to ``timeout`` for one."""
        pubsub = self._pubsub
        if pubsub is None:
            raise RuntimeError("subscription not opened")
        out: list[Envelope] = []
        try:
            if not pubsub.subscribed:
                await pubsub.psubscribe(self.channel)
            message = await pubsub.get_message(timeout=max(timeout, 0.0))
            while message is not None:
                envelope = _envelope(message)
                if envelope is not None:
                    out.append(envelope)
                message = await pubsub.get_message(timeout=0.0)
        except TRANSIENT_ERRORS as exc:
            if not self._failing:
                logger.warning("redis: lost the subscription to %s: %s", self.channel, exc)
            self._failing = True
            await asyncio.sleep(min(RETRY_PAUSE, max(timeout, 0.0)))
            return out
        if self._failing:
            logger.warning("redis: subscribed to %s again", self.channel)
            self._failing = False
        return out

    async def close(self) -> None:
        """Unsubscribe and disconnect."""
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        if pubsub is not None:
            try:
                await pubsub.aclose()
            except TRANSIENT_ERRORS:
                pass
        if client is not None:
            await release(client)


def _envelope(message: Mapping[str, Any]) -> Envelope | None:
    """The envelope of a pub/sub message; None for other kinds of pub/sub replies."""
    if message.get("type") not in ("message", "pmessage"):
        return None
    data = message.get("data")
    if not isinstance(data, bytes | str):
        return None
    return kombu.decode(data).envelope
