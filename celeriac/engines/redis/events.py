"""Events on Redis: kombu's fanout over pub/sub (SPEC §3.6, §6.1).

An event message is kombu's JSON envelope ``PUBLISH``ed on the channel
``<global_keyprefix>/<db>.<exchange>/<routing key>`` (``/0.celeryev/task.multi``). A
receiver ``PSUBSCRIBE``s ``/<db>.<exchange>/<binding>`` with ``#`` as ``*`` (the Redis glob
``*`` also matches dots, so ``worker.*`` covers ``worker.#``), and records its queue in
kombu's binding set ``_kombu.binding.<exchange>`` while it listens, as kombu does, so tools
listing bindings see it. Publishing a batch is one pipelined round trip.

A receiver whose connection drops logs it once and subscribes again on its next wait.
Messages that are not kombu envelopes are handed on as invalid envelopes (content type
``application/x-celeriac-invalid``), which the receiver refuses and logs.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from celeriac.engines.redis.connection import TRANSIENT_ERRORS, connect_redis, parse_redis_url
from celeriac.events.bus import EventChannel, Published
from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope
from celeriac.reconnect import Outage

__all__ = ["RedisEventBus", "RedisSubscription"]


logger = logging.getLogger("celeriac.events")


class RedisSubscription:
    """One receiver's pattern subscription; subscribes again after a lost connection."""

    def __init__(self, client: Redis[bytes], pattern: str, binding_key: str, member: str) -> None:
        self._client = client
        self._pattern = pattern
        self._binding_key = binding_key
        self._member = member
        self._pubsub: PubSub | None = None
        self.outage = Outage(logger, "events: subscription")
        """The subscription's outages, each logged once, and its end."""

    async def open(self) -> None:
        """``PSUBSCRIBE`` and wait for the confirmation (every later publish reaches us)."""
        pubsub = self._client.pubsub()
        await pubsub.psubscribe(self._pattern)
        await pubsub.get_message(timeout=5.0)
        self._pubsub = pubsub

    async def receive(self, timeout: float) -> list[Envelope]:
        """Every message that arrived; waits up to ``timeout`` s for the first.

        A lost connection is logged once and costs the wait; the next call subscribes
        again (events published meanwhile are lost, as with any pub/sub receiver).
        """
        try:
            if self._pubsub is None:
                await self.open()
            found = await self._messages(timeout)
        except TRANSIENT_ERRORS as exc:
            self.outage.failed(exc)  # subscribed again on the next call
            await self._drop()
            await asyncio.sleep(min(timeout, 1.0))
            return []
        self.outage.ok()
        return found

    async def _messages(self, timeout: float) -> list[Envelope]:
        assert self._pubsub is not None
        found: list[Envelope] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wait = 0.0 if found else max(0.0, deadline - loop.time())
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            if message is not None and message.get("type") in ("pmessage", "message"):
                found.append(kombu.decode(message["data"]).envelope)
                continue
            # None: nothing came, or a subscription confirmation was skipped.
            if found or loop.time() >= deadline:
                return found

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()  # type: ignore[attr-defined]
            except Exception:  # already broken
                pass

    async def close(self) -> None:
        """Unsubscribe and remove the binding-set member."""
        await self._drop()
        try:
            await self._client.srem(self._binding_key, self._member)
        except Exception:  # the connection is going away anyway
            pass


class RedisEventBus:
    """The event exchange of one Redis database."""

    def __init__(self, url: str, options: Mapping[str, Any], channel: EventChannel) -> None:
        self.url = url
        self._settings = parse_redis_url(url, options)
        self.channel = channel
        prefix = self._settings.key_prefix
        self._base = f"{prefix}/{self._settings.db}.{self.channel.exchange}"
        self._binding_key = f"{prefix}_kombu.binding.{self.channel.exchange}"
        self._client: Redis[bytes] | None = None

    def _redis(self) -> Redis[bytes]:
        if self._client is None:
            self._client = connect_redis(self._settings)
        return self._client

    def channel_for(self, routing_key: str) -> str:
        """The pub/sub channel of ``routing_key``."""
        return f"{self._base}/{routing_key}" if routing_key else self._base

    async def publish(self, messages: Sequence[Published]) -> None:
        """``PUBLISH`` every message, pipelined."""
        if not messages:
            return
        exchange = self.channel.exchange
        async with self._redis().pipeline(transaction=False) as pipe:
            for message in messages:
                data = kombu.encode(
                    message.envelope,
                    exchange=exchange,
                    routing_key=message.routing_key,
                    delivery_tag=str(uuid.uuid4()),
                )
                pipe.publish(self.channel_for(message.routing_key), data)
            await pipe.execute()

    async def subscribe(self, binding: str = "#") -> RedisSubscription:
        """Subscribe to the routing keys matching ``binding``."""
        client = self._redis()
        queue = f"{self.channel.queue_prefix}.{uuid.uuid4()}"
        member = kombu.binding_member(binding, queue)
        await client.sadd(self._binding_key, member)
        pattern = self.channel_for(binding.replace("#", "*"))
        subscription = RedisSubscription(client, pattern, self._binding_key, member)
        await subscription.open()
        return subscription

    async def close(self) -> None:
        """Close the connection pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()  # type: ignore[attr-defined]
        await asyncio.sleep(0)
