"""Publishing through celeriac.engines.redis.publishing, on both clients.

What it must keep from the redis-py path it replaces: every list gets its messages in
publishing order (one LPUSH of many values per list), an error reply is raised without
leaving replies unread, a connection the server closed while idle is reconnected rather
than failing the publish, and no more than ``max_connections`` are ever opened.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from celeriac.engines.redis.broker import RedisTransport
from celeriac.engines.redis.connection import parse_redis_url
from celeriac.engines.redis.publishing import RedisBlockingPublisher
from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope
from celeriac.transport.base import Outgoing
from tests.services import REDIS_URL as URL
from tests.services import delete_prefixed, key_prefix, redis_client

pytestmark = pytest.mark.redis


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    client = redis_client()
    yield client
    client.close()


@pytest.fixture
def prefix(client: redis.Redis) -> Iterator[str]:
    prefix = key_prefix("push")
    yield prefix
    delete_prefixed(client, prefix)


def _options(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"global_keyprefix": prefix, "client_name": prefix.rstrip(":"), **extra}


def _message(queue: str, number: int, priority: int = 0) -> Outgoing:
    properties = {"priority": priority} if priority else {}
    envelope = Envelope(body=b"%d" % number, headers={"n": number}, properties=properties)
    return Outgoing(envelope, routing_key=queue)


def _stored(client: redis.Redis, key: str) -> list[int]:
    """The ``n`` header of each message in list ``key``, oldest (next to consume) first."""
    return [kombu.decode(raw).envelope.headers["n"] for raw in reversed(client.lrange(key, 0, -1))]


def _kill_connections(client: redis.Redis, name: str) -> int:
    """Close, server side, every connection named ``name`` (as an idle timeout would)."""
    killed = 0
    for info in client.client_list():
        if info.get("name") == name:
            killed += client.client_kill_filter(_id=info["id"])
    return killed


def _interleaved() -> list[Outgoing]:
    """Messages alternating between two queues and two priority buckets of one queue."""
    spread = [("a", 0), ("b", 0), ("a", 9), ("a", 0), ("b", 0), ("a", 9)]
    return [_message(queue, n, priority) for n, (queue, priority) in enumerate(spread * 5)]


def _expected(messages: list[Outgoing], queue: str, priority: int) -> list[int]:
    return [
        m.envelope.headers["n"]
        for m in messages
        if m.routing_key == queue and m.envelope.priority == priority
    ]


async def test_each_list_gets_its_messages_in_order_async(client: redis.Redis, prefix: str) -> None:
    transport = RedisTransport(URL, options=_options(prefix))
    await transport.connect()
    messages = _interleaved()
    try:
        await transport.publish(messages)
    finally:
        await transport.close()
    for queue, priority in (("a", 0), ("b", 0), ("a", 9)):
        key = prefix + kombu.bucket_key(queue, priority)
        assert _stored(client, key) == _expected(messages, queue, priority)
    assert client.llen(f"{prefix}celeriac:notify:a") == 16  # capped tokens, one per message
    assert client.llen(f"{prefix}celeriac:notify:b") == 10


def test_each_list_gets_its_messages_in_order_blocking(client: redis.Redis, prefix: str) -> None:
    publisher = RedisBlockingPublisher(parse_redis_url(URL, _options(prefix)))
    messages = _interleaved()
    try:
        assert publisher.publish(messages)
    finally:
        publisher.close()
    for queue, priority in (("a", 0), ("b", 0), ("a", 9)):
        key = prefix + kombu.bucket_key(queue, priority)
        assert _stored(client, key) == _expected(messages, queue, priority)


async def test_more_values_than_one_lpush_takes(client: redis.Redis, prefix: str) -> None:
    transport = RedisTransport(URL, options=_options(prefix))
    await transport.connect()
    try:
        await transport.publish([_message("big", n) for n in range(2500)])
    finally:
        await transport.close()
    assert _stored(client, f"{prefix}big") == list(range(2500))


@pytest.mark.parametrize("lists", [1, 2])  # a single LPUSH, or a MULTI of several
async def test_an_error_reply_is_raised_and_the_connection_stays_usable(
    client: redis.Redis, prefix: str, lists: int
) -> None:
    client.set(f"{prefix}not-a-list", "x")  # LPUSH onto it fails with WRONGTYPE
    bad = [_message("not-a-list", 1)] + [_message("fine", 2)] * (lists - 1)
    transport = RedisTransport(URL, options=_options(prefix, max_retries=0))
    await transport.connect()
    publisher = RedisBlockingPublisher(parse_redis_url(URL, _options(prefix)))
    try:
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await transport.publish(bad)
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            publisher.publish(bad)
        await transport.publish([_message("q", 1)])  # every reply was read: in step
        assert publisher.publish([_message("q", 2)])
    finally:
        await transport.close()
        publisher.close()
    assert _stored(client, f"{prefix}q") == [1, 2]


async def test_connections_closed_by_the_server_while_idle_are_reconnected(
    client: redis.Redis, prefix: str
) -> None:
    name = prefix.rstrip(":")
    transport = RedisTransport(URL, options=_options(prefix, max_retries=0))
    await transport.connect()
    publisher = RedisBlockingPublisher(parse_redis_url(URL, _options(prefix)))
    try:
        await transport.publish([_message("q", 1)])
        assert publisher.publish([_message("q", 2)])
        assert _kill_connections(client, name) >= 2
        await asyncio.sleep(0.05)  # let the event loop see the close
        await transport.publish([_message("q", 3)])  # no retries allowed: must not fail
        assert publisher.publish([_message("q", 4)])
    finally:
        await transport.close()
        publisher.close()
    assert _stored(client, f"{prefix}q") == [1, 2, 3, 4]


def test_threads_share_at_most_max_connections(client: redis.Redis, prefix: str) -> None:
    publisher = RedisBlockingPublisher(parse_redis_url(URL, _options(prefix, max_connections=2)))
    errors: list[BaseException] = []

    def publish(worker: int) -> None:
        try:
            for n in range(40):
                assert publisher.publish([_message(f"t{worker}", n)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(w,)) for w in range(6)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        named = [c for c in client.client_list() if c.get("name") == prefix.rstrip(":")]
    finally:
        publisher.close()
    assert not errors
    assert len(named) <= 2
    for worker in range(6):
        assert _stored(client, f"{prefix}t{worker}") == list(range(40))
