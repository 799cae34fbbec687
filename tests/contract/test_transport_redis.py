"""RedisTransport: the transport contract plus what only the Redis layout does.

Needs the Redis server of ``CELERIAC_TEST_REDIS_URL`` (see ``tests/services.py``).
Every test uses its own ``global_keyprefix`` and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from celeriac.engines.redis.broker import RedisTransport
from celeriac.protocol import kombu
from celeriac.protocol.envelope import Envelope
from celeriac.testing.contract.transport import (
    MakeTransport,
    TransportContract,
    bodies,
    out,
    qname,
)
from celeriac.transport.base import Outgoing, QueueSpec, Transport
from tests.services import REDIS_URL, unavailable
from tests.vectors import load_vector

pytestmark = pytest.mark.redis

WAIT = 10.0


async def redis_or_skip() -> aioredis.Redis:
    """A raw client on the test server; skip (or fail under CI) when it is unreachable."""
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except (OSError, aioredis.ConnectionError) as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL} is unreachable: {exc}")
    return client


async def delete_prefixed(client: aioredis.Redis, prefix: str) -> None:
    """Delete every key starting with ``prefix``."""
    keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
    for start in range(0, len(keys), 500):
        await client.delete(*keys[start : start + 500])


@pytest.fixture
async def raw() -> AsyncIterator[aioredis.Redis]:
    """A raw redis client, for looking at the keys the transport writes."""
    client = await redis_or_skip()
    yield client
    await client.aclose()


@pytest.fixture
def prefix() -> str:
    """A key prefix unique to this test."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
async def make_redis(raw: aioredis.Redis, prefix: str) -> AsyncIterator[MakeTransport]:
    """Factory of connected transports sharing this test's key prefix."""
    made: list[RedisTransport] = []

    async def make(**options: Any) -> Transport:
        transport = RedisTransport(REDIS_URL, options={"global_keyprefix": prefix, **options})
        await transport.connect()
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()
    await delete_prefixed(raw, prefix)


class TestRedisTransport(TransportContract):
    @pytest.fixture
    def make_transport(self, make_redis: MakeTransport) -> MakeTransport:
        return make_redis

    @pytest.fixture
    async def transport(self, make_transport: MakeTransport) -> Transport:
        return await make_transport()


# --- the kombu layout -------------------------------------------------------------------


async def test_publish_writes_kombu_envelope_and_binding(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    t = await make_redis()
    q = qname("wire")
    await t.declare([QueueSpec(q)])
    env = Envelope(b"[[1], {}, {}]", {"id": "x", "task": "t"}, properties={"priority": 7})
    await t.publish([Outgoing(env, routing_key=q)])
    member = kombu.binding_member(q, q)
    assert await raw.sismember(f"{prefix}_kombu.binding.{q}", member)
    assert await raw.sismember(f"{prefix}_kombu.binding_permanent.{q}", member)
    [stored] = await raw.lrange(f"{prefix}{q}{kombu.SEP}6", 0, -1)  # priority 7 -> bucket 6
    doc = json.loads(stored)
    assert set(doc) == {"body", "content-encoding", "content-type", "headers", "properties"}
    props = doc["properties"]
    assert props["delivery_info"] == {"exchange": "", "routing_key": q}
    assert (props["priority"], props["body_encoding"]) == (7, "base64")
    uuid.UUID(props["delivery_tag"])
    # The wake-up token list expires: queues nobody consumes leave nothing behind.
    assert 0 < await raw.ttl(f"{prefix}celeriac:notify:{q}") <= 60


async def test_fetch_records_unacked_entry_kombu_can_restore(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    t = await make_redis()
    q = qname("unacked")
    await t.publish([out(q, b"job")])
    [d] = await t.fetch([q], limit=1, timeout=WAIT)
    entry = await raw.hget(f"{prefix}unacked", d.tag)
    envelope, exchange, routing_key = json.loads(entry)
    # kombu's restore routes [envelope, "", queue] straight back to the queue.
    assert (exchange, routing_key) == ("", q)
    assert kombu.decode(json.dumps(envelope)).envelope == d.envelope
    assert await raw.zscore(f"{prefix}unacked_index", d.tag) is not None
    await t.ack([d])
    assert await raw.hlen(f"{prefix}unacked") == 0
    assert await raw.zcard(f"{prefix}unacked_index") == 0


async def test_message_from_a_celery_producer_is_consumed(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    """An envelope exactly as Celery 5.7 LPUSHes it (no wake-up token) is fetched."""
    t = await make_redis(poll_interval=0.2)
    q = qname("celery-producer")
    captured = _captured_lpush()
    waiter = asyncio.create_task(t.fetch([q], limit=1, timeout=WAIT))
    await asyncio.sleep(0.05)
    await raw.lpush(prefix + q, captured)
    [d] = await waiter
    assert d.envelope.headers["task"] == "capapp.add"
    assert d.envelope.body == b'[[2, 3], {}, {"callbacks": null, "errbacks": null, ' + (
        b'"chain": null, "chord": null}]'
    )
    assert (d.exchange, d.routing_key) == ("", "celery")


async def test_celery_priority_buckets_served_highest_number_first(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    t = await make_redis()
    q = qname("buckets")
    for step in (0, 3, 6, 9):
        env = kombu.encode(
            Envelope(str(step).encode(), properties={"priority": step}),
            exchange="",
            routing_key=q,
            delivery_tag=str(uuid.uuid4()),
        )
        await raw.lpush(prefix + kombu.bucket_key(q, step), env)
    got = await t.fetch([q], limit=4, timeout=WAIT)
    assert [d.envelope.body for d in got] == [b"9", b"6", b"3", b"0"]


async def test_priority_order_lower_first_matches_a_celery_worker(
    make_redis: MakeTransport,
) -> None:
    t = await make_redis(priority_order="lower_first")
    q = qname("lower-first")
    await t.publish([out(q, str(p).encode(), priority=p) for p in (9, 0, 5)])
    got = await t.fetch([q], limit=3, timeout=WAIT)
    assert [d.envelope.body for d in got] == [b"0", b"5", b"9"]


async def test_garbage_in_a_queue_is_surfaced_not_lost(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    t = await make_redis()
    q = qname("garbage")
    junk = [b"\xff\xfenot json", b'{"headers": {}}', b"[1, 2]", b'{"body": "***", '
            b'"properties": {"body_encoding": "base64"}}']  # fmt: skip
    for item in junk:
        await raw.lpush(prefix + q, item)
    got = await t.fetch([q], limit=10, timeout=WAIT)
    assert [d.envelope.body for d in got] == junk
    assert all(d.envelope.content_type == kombu.INVALID_CONTENT_TYPE for d in got)
    assert all(kombu.INVALID_HEADER in d.envelope.headers for d in got)
    for d in got:
        await t.dead_letter(d, d.envelope.headers[kombu.INVALID_HEADER])
    dead = await t.list_dead()
    assert [d.envelope.body for d in dead] == junk  # the exact bytes are kept
    assert await t.requeue_dead() == 4
    assert sorted(await raw.lrange(prefix + q, 0, -1)) == sorted(junk)


async def test_requeue_of_garbage_puts_the_same_bytes_back(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    t = await make_redis()
    q = qname("garbage-requeue")
    await raw.lpush(prefix + q, b"\x00\x01 not an envelope")
    [d] = await t.fetch([q], limit=1, timeout=WAIT)
    await t.reject([d], requeue=True)
    assert await raw.lrange(prefix + q, 0, -1) == [b"\x00\x01 not an envelope"]


async def test_fanout_also_publishes_on_kombu_channel(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    t = await make_redis()
    ex = qname("bcast")
    pubsub = raw.pubsub()
    await pubsub.subscribe(f"{prefix}/0.{ex}/rk")
    await t.declare([QueueSpec(qname("fq"), ex, "fanout")])
    await t.publish([Outgoing(Envelope(b"hello"), ex, "rk")])
    message = None
    deadline = time.monotonic() + WAIT
    while message is None and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
    await pubsub.aclose()
    assert message is not None
    assert kombu.decode(message["data"]).envelope.body == b"hello"


# --- leases, liveness and restore --------------------------------------------------------


async def test_heartbeat_refreshes_unacked_index_scores(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    """A Celery visibility sweep looks at these scores: a live lease must look fresh."""
    t = await make_redis(lease_timeout=0.9)
    q = qname("fresh")
    await t.publish([out(q)])
    [d] = await t.fetch([q], limit=1, timeout=WAIT)
    first = await raw.zscore(f"{prefix}unacked_index", d.tag)
    await asyncio.sleep(1.0)
    later = await raw.zscore(f"{prefix}unacked_index", d.tag)
    assert first is not None and later is not None and later > first + 0.3
    await t.ack([d])


async def test_dead_consumer_is_swept_and_unregistered(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    """A consumer that stops heartbeating loses its leases; a live one keeps them."""
    options = {"lease_timeout": 0.6, "heartbeat_interval": 0.2}
    dead = await make_redis(**options)
    live = await make_redis(**options)
    q = qname("swept")
    await dead.publish([out(q, b"orphan")])
    [held] = await dead.fetch([q], limit=1, timeout=WAIT)
    assert isinstance(dead, RedisTransport)
    await dead.leases.stop_heartbeat()  # as if the process froze or died
    got = []
    deadline = time.monotonic() + WAIT
    while not got and time.monotonic() < deadline:
        got = await live.fetch([q], limit=1, timeout=0.5)
    assert [d.envelope.body for d in got] == [b"orphan"]
    assert got[0].redelivered and got[0].envelope == held.envelope
    members = await raw.smembers(f"{prefix}celeriac:consumers")
    assert dead.consumer_id.encode() not in members
    await live.ack(got)


async def test_lost_fetch_reply_is_reconciled(make_redis: MakeTransport) -> None:
    """A fetch cancelled after Redis ran it must not strand the messages it leased."""
    t = await make_redis()
    other = await make_redis()
    assert isinstance(t, RedisTransport)
    q = qname("lost-reply")
    await t.publish([out(q, b"x")])
    # Simulate the lost reply: run the script, then pretend the answer never arrived.
    got = await t.fetch([q], limit=1, timeout=WAIT)
    t.leases.unsure.add(int(got[0].tag.split(":")[1]))
    await t.leases.reconcile()
    again = await other.fetch([q], limit=1, timeout=WAIT)
    assert [d.envelope.body for d in again] == [b"x"] and again[0].redelivered


def _record_blocks(t: RedisTransport) -> list[float]:
    """The ``block`` of every fetch step ``t`` takes from now on (0: a plain fetch)."""
    blocks: list[float] = []
    step = t._fetch_once

    async def recording(queues: Any, limit: int, block: float) -> Any:
        blocks.append(block)
        return await step(queues, limit, block)

    t._fetch_once = recording  # type: ignore[method-assign]
    return blocks


async def test_a_fetch_after_a_short_one_waits_for_a_token_at_once(
    make_redis: MakeTransport,
) -> None:
    """After a fetch that emptied the queue, the next one sends BLPOP + FETCH first: no
    round trip on a fetch that would find nothing (the one-task-at-a-time round trip)."""
    t = await make_redis()
    assert isinstance(t, RedisTransport)
    q = qname("drained")
    await t.publish([out(q, b"a")])
    assert bodies(await t.fetch([q], limit=5, timeout=WAIT)) == [b"a"]
    blocks = _record_blocks(t)
    waiter = asyncio.create_task(t.fetch([q], limit=5, timeout=WAIT))
    await asyncio.sleep(0.05)
    await t.publish([out(q, b"b")])  # its wake-up token ends the BLPOP
    assert bodies(await waiter) == [b"b"]
    assert len(blocks) == 1 and blocks[0] > 0


async def test_a_fetch_after_a_full_one_looks_first(make_redis: MakeTransport) -> None:
    """A fetch that filled its limit may have left messages (a Celery producer's come with
    no token): the next one fetches before it blocks; so does one on other queues."""
    t = await make_redis()
    assert isinstance(t, RedisTransport)
    q, other = qname("full"), qname("other")
    await t.publish([out(q, b"a"), out(q, b"b")])
    assert bodies(await t.fetch([q], limit=1, timeout=WAIT)) == [b"a"]
    blocks = _record_blocks(t)
    assert bodies(await t.fetch([q], limit=1, timeout=WAIT)) == [b"b"]
    assert blocks == [0.0]
    await t.publish([out(other, b"c")])
    assert bodies(await t.fetch([q], limit=5, timeout=0.0)) == []  # q drained now
    blocks.clear()
    assert bodies(await t.fetch([q, other], limit=5, timeout=WAIT)) == [b"c"]
    assert blocks == [0.0]


async def test_ack_loads_its_script_when_the_server_does_not_know_it(
    make_redis: MakeTransport, raw: aioredis.Redis, prefix: str
) -> None:
    """The ack script goes out as a bare EVALSHA; a NOSCRIPT reply loads it and acks."""
    t = await make_redis()
    assert isinstance(t, RedisTransport)
    q = qname("noscript")
    await t.publish([out(q, b"a")])
    got = await t.fetch([q], limit=1, timeout=WAIT)
    t._scripts["ACK"].sha = "0" * 40  # type: ignore[attr-defined]  # unknown to Redis
    await t.ack(got)
    assert await raw.hlen(f"{prefix}unacked") == 0


# --- delayed messages ---------------------------------------------------------------------


async def test_many_delayed_messages_move_once_and_not_early(make_redis: MakeTransport) -> None:
    t = await make_redis()
    workers = [await make_redis() for _ in range(2)]
    q = qname("eta-bulk")
    n = 10_000
    soon = time.time() + 1.0
    batch = [out(q, str(i).encode(), not_before=soon + (i % 50) * 0.01) for i in range(n)]
    for start in range(0, n, 2000):
        await t.publish(batch[start : start + 2000])
    assert await t.queue_sizes([q]) == {q: n}

    everything: list[bytes] = []

    async def consume(w: Transport) -> None:
        deadline = time.monotonic() + WAIT + 5
        while time.monotonic() < deadline and len(everything) < n:
            got = await w.fetch([q], limit=500, timeout=0.5)
            if got:
                assert time.time() >= soon - 0.01  # never handed out early
                everything.extend(d.envelope.body for d in got)
                await w.ack(got)

    await asyncio.gather(*(consume(w) for w in workers))
    assert len(everything) == n and len(set(everything)) == n
    assert await t.queue_sizes([q]) == {q: 0}


def _captured_lpush() -> bytes:
    """The envelope Celery 5.7 LPUSHed in the redis-plain capture."""
    for command in load_vector("redis-plain.json")["redis_commands"]:
        if command["cmd"][0] == "LPUSH":
            return str(command["cmd"][2]).encode()
    raise AssertionError("no LPUSH in the capture")
