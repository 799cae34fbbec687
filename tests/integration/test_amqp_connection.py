"""AMQPTransport when RabbitMQ drops its connection (closed from the broker side).

Uses the session vhost of the AMQP contract tests; ``rabbitmqctl close_all_connections -p
<vhost>`` only touches connections of that vhost.
"""

from __future__ import annotations

import asyncio
import time

import aiormq
import pytest

from celeriac import Celery
from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.testing.contract.transport import WAIT, MakeTransport, bodies, out, qname
from celeriac.transport.base import QueueSpec
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import rabbitmqctl

pytestmark = pytest.mark.amqp

# Fixtures shared with the AMQP contract tests (session vhost, transport factory).
amqp_url = amqp_fixtures.amqp_url
amqp_vhost = amqp_fixtures.amqp_vhost
make_amqp = amqp_fixtures.make_amqp


async def drop_connections(vhost: str) -> None:
    """Have the broker close every connection of ``vhost``."""
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", vhost, "test")


async def test_waiting_fetch_reconnects_and_gets_the_requeued_message(
    make_amqp: MakeTransport, amqp_vhost: str
) -> None:
    t = await make_amqp()
    assert isinstance(t, AMQPTransport)
    q = qname("reconnect")
    await t.declare([QueueSpec(q, max_priority=5)])
    await t.publish([out(q, b"a")])
    [held] = await t.fetch([q], limit=1, timeout=WAIT)
    old = t._session._conn
    waiting = asyncio.create_task(t.fetch([q], limit=5, timeout=30))
    await asyncio.sleep(0.2)
    await drop_connections(amqp_vhost)
    start = time.monotonic()
    again = await waiting  # woke up, reconnected, consumed again: not deaf
    assert time.monotonic() - start < WAIT
    assert bodies(again) == [b"a"] and again[0].redelivered
    assert t._session._conn is not old
    await t.ack([held])  # stale tag of the dead channel: ignored, nothing breaks
    await t.ack(again)
    await t.publish([out(q, b"b", priority=3)])  # publishing works on the new connection
    got = await t.fetch([q], limit=5, timeout=WAIT)
    assert bodies(got) == [b"b"]
    await t.ack(got)
    assert await t.queue_sizes([q]) == {q: 0}


async def test_buffered_deliveries_of_the_dead_channel_are_not_handed_out(
    make_amqp: MakeTransport, amqp_vhost: str
) -> None:
    t = await make_amqp(release_idle_after=60)
    q = qname("buffer")
    await t.publish([out(q, str(i).encode()) for i in range(5)])
    first = await t.fetch([q], limit=2, timeout=WAIT)  # three more wait in the buffer
    assert len(first) == 2
    await drop_connections(amqp_vhost)
    # Once the client has read the broker's close: until then nothing can tell it the
    # channel is dead (a loaded machine reads it late), and what it hands out meanwhile is
    # simply redelivered later, as for any ack lost with its connection.
    assert isinstance(t, AMQPTransport)
    deadline = time.monotonic() + WAIT
    while t._consumer is not None and t._consumer.alive and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    got: list[bytes] = []
    while len(got) < 5 and time.monotonic() < deadline:
        batch = await t.fetch([q], limit=10, timeout=1.0)
        got += bodies(batch)
        await t.ack(batch)
    await t.ack(first)  # stale
    assert sorted(got) == [str(i).encode() for i in range(5)]  # each exactly once more
    assert await t.queue_sizes([q]) == {q: 0}


async def test_leased_delivery_survives_connection_loss(
    make_amqp: MakeTransport, amqp_vhost: str
) -> None:
    t = await make_amqp(consumer_timeout=0.6, lease_timeout=3)
    other = await make_amqp()
    assert isinstance(t, AMQPTransport)
    q = qname("leased")
    await t.publish([out(q, b"long")])
    [held] = await t.fetch([q], limit=1, timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while t._held[held.tag].lease is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert t._held[held.tag].lease is not None
    await drop_connections(amqp_vhost)
    await asyncio.sleep(0.5)
    # Neither the broker (it was acked when leased) nor the lease (renewed) gives it away.
    assert await other.fetch([q], limit=1, timeout=4.0) == []
    await t.ack([held])  # deletes the lease queue over the new connection
    assert await other.fetch([q], limit=1, timeout=4.0) == []
    assert await other.queue_sizes([q]) == {q: 0}


async def test_publish_and_revoked_work_after_reconnect(
    make_amqp: MakeTransport, amqp_vhost: str
) -> None:
    t = await make_amqp()
    q = qname("after")
    await t.revoke(["r1"], expires=time.time() + 60)
    assert "r1" in await t.revoked()
    await drop_connections(amqp_vhost)
    await t.publish([out(q, b"x")])
    await t.revoke(["r2"], expires=time.time() + 60)
    assert {"r1", "r2"} <= await t.revoked()
    assert await t.queue_sizes([q]) == {q: 1}


async def test_queue_deleted_under_a_waiting_fetch_is_consumed_again(
    make_amqp: MakeTransport, amqp_url: str
) -> None:
    t = await make_amqp()
    producer = await make_amqp()
    q = qname("deleted")
    await t.declare([QueueSpec(q, max_priority=3)])
    waiting = asyncio.create_task(t.fetch([q], limit=1, timeout=30))
    await asyncio.sleep(0.3)
    raw = await aiormq.connect(amqp_url)
    channel = await raw.channel()
    await channel.queue_delete(q)
    await raw.close()
    await asyncio.sleep(0.3)
    await producer.publish([out(q, b"after", priority=2)])  # recreated as declared
    got = await asyncio.wait_for(waiting, WAIT)
    assert bodies(got) == [b"after"]
    await t.ack(got)


async def test_control_declares_its_reply_queue_again_once_rabbitmq_dropped_it(
    amqp_url: str,
) -> None:
    """RabbitMQ deletes a client's reply queue (auto-delete, x-expires) once nobody consumes
    it: a later request with replies must not wait on a queue that is gone."""
    app = Celery("ctl", broker=amqp_url)
    try:
        assert await app.control.inspect(timeout=0.3).aping() is None  # declares it
        transport = await app.aget_transport()
        assert isinstance(transport, AMQPTransport)
        queue = app.control.names.reply_queue(app.control.client_id)
        probe = await (await transport._session.admin()).queue_declare(queue, passive=True)
        assert probe is not None
        # Idle for longer than release_idle_after: the consumer goes, and the queue with it.
        await asyncio.sleep(transport._opts.release_idle_after + 1.5)
        assert await app.control.inspect(timeout=0.3).aping() is None  # no error: no one
    finally:
        await app.aclose()
