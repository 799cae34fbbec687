"""The calling-thread RabbitMQ publisher of the sync API (``celeriac.engines.amqp.blocking``).

Uses the session vhost of the AMQP contract tests. What matters: a publish returns only once
the broker confirmed it (a refused one raises), what it sends reads back exactly as the
transport's own publish, and ``task.delay()`` takes this path without the portal's loop.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.engines.amqp.blocking import AMQPBlockingPublisher, Nacked, blocking_publisher
from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.engines.amqp.connection import AMQPOptions
from celeriac.exceptions import OperationalError
from celeriac.protocol.envelope import Envelope
from celeriac.routing import Queue
from celeriac.testing.contract.transport import MakeTransport, bodies, drain, out, qname
from celeriac.transport.base import Outgoing, QueueSpec
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import rabbitmqctl

pytestmark = pytest.mark.amqp

amqp_url = amqp_fixtures.amqp_url
amqp_vhost = amqp_fixtures.amqp_vhost
make_amqp = amqp_fixtures.make_amqp

_FULL = {"x-max-length": 1, "x-overflow": "reject-publish"}


@pytest.fixture
def publisher(amqp_url: str) -> Iterator[AMQPBlockingPublisher]:
    made = blocking_publisher(amqp_url, {})
    assert made is not None
    yield made
    made.close()


async def test_messages_read_back_as_sent(
    publisher: AMQPBlockingPublisher, make_amqp: MakeTransport
) -> None:
    t = await make_amqp()
    q = qname("blocking")
    await t.declare([QueueSpec(q, max_priority=5)])
    env = Envelope(
        body=b'{"x": 1}' + b"y" * 300_000,  # several body frames
        headers={"id": "abc", "task": "t.add", "argsrepr": "(1,)", "retries": 0},
        content_type="application/json",
        content_encoding="utf-8",
        properties={"correlation_id": "abc", "reply_to": "me", "priority": 3},
    )
    assert publisher.publish([Outgoing(env, "", q), out(q, b"second")]) is True
    got = await drain(t, [q], 2)
    assert bodies(got) == [env.body, b"second"]
    first = got[0].envelope
    assert first.headers == env.headers and first.content_type == env.content_type
    assert first.properties == {**env.properties, "delivery_mode": 2}
    await t.ack(got)


async def test_a_refused_publish_raises(
    publisher: AMQPBlockingPublisher, make_amqp: MakeTransport
) -> None:
    """A full ``reject-publish`` queue nacks: publish must raise, not return as if queued."""
    t = await make_amqp()
    q = qname("full")
    await t.declare([QueueSpec(q, queue_arguments=dict(_FULL))])
    assert publisher.publish([out(q, b"fits")])
    with pytest.raises(Nacked, match="refused 2 of 2"):
        publisher.publish([out(q, b"a"), out(q, b"b")])
    with pytest.raises(Nacked):
        publisher.publish([out(q, b"c")])
    assert await t.queue_sizes([q]) == {q: 1}
    assert publisher.publish([]) is False  # nothing to do, and the connection still works


async def test_unroutable_is_logged_and_dropped(
    publisher: AMQPBlockingPublisher,
    make_amqp: MakeTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = await make_amqp()
    q = qname("routed")
    exchange = f"ex.{uuid.uuid4().hex[:8]}"
    await t.declare([QueueSpec(q, exchange=exchange, routing_key="known")])
    with caplog.at_level(logging.WARNING, "celeriac.engines.amqp.broker"):
        sent = publisher.publish([Outgoing(out(q).envelope, exchange, "unknown"), out(q, b"ok")])
    assert sent is True
    assert "unroutable and dropped" in caplog.text and "'unknown'" in caplog.text
    got = await drain(t, [q], 1)
    assert bodies(got) == [b"ok"]
    await t.ack(got)


async def test_delayed_messages_are_left_to_the_transport(
    publisher: AMQPBlockingPublisher,
) -> None:
    assert publisher.publish([out("nowhere", not_before=1.0)]) is False


async def test_an_idle_connection_the_server_closed_is_replaced(
    publisher: AMQPBlockingPublisher, make_amqp: MakeTransport, amqp_vhost: str
) -> None:
    t = await make_amqp()
    q = qname("idle")
    await t.declare([QueueSpec(q)])
    assert publisher.publish([out(q, b"1")])
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test")
    await asyncio.sleep(0.3)
    assert publisher.publish([out(q, b"2")])  # noticed before sending: sent once
    got = await drain(t, [q], 2)
    assert bodies(got) == [b"1", b"2"]
    await t.ack(got)


def test_unreachable_raises_not_sent() -> None:
    made = AMQPBlockingPublisher("amqp://guest:guest@127.0.0.1:1//", AMQPOptions())
    with pytest.raises(OperationalError) as caught:
        made.publish([out("q")])
    assert getattr(caught.value, "maybe_sent", None) is False


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("amqps://guest:guest@localhost//", {}),
        ("amqp://guest:guest@localhost//", {"ssl": True}),
        ("amqp://h1//;amqp://h2//", {}),
    ],
)
def test_tls_and_failover_lists_use_the_transport(url: str, options: dict[str, Any]) -> None:
    assert blocking_publisher(url, options) is None


# the sync API ---------------------------------------------------------------------------------


def _app(url: str, queue: str, **settings: Any) -> Celery:
    app = Celery("blocking", broker=url, task_default_queue=queue, **settings)

    @app.task(name="blocking.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


async def test_delay_publishes_from_the_calling_thread(
    amqp_url: str, make_amqp: MakeTransport
) -> None:
    q = qname("delay")
    app = _app(amqp_url, q)
    add = app.tasks["blocking.add"]

    def run() -> None:
        add.delay(1, 1)  # declares the queue through the portal, once
        app.run_sync = _no_portal  # type: ignore[method-assign]
        add.delay(2, 2)
        add.apply_async((3, 3), priority=None)

    try:
        await asyncio.to_thread(run)
        t = await make_amqp()
        got = await drain(t, [q], 3)
        assert [d.envelope.headers["argsrepr"] for d in got] == ["(1, 1)", "(2, 2)", "(3, 3)"]
        await t.ack(got)
    finally:
        del app.run_sync
        await asyncio.to_thread(app.close)


async def test_delay_raises_when_the_broker_refuses(
    amqp_url: str, make_amqp: MakeTransport
) -> None:
    q = qname("delayfull")
    t = await make_amqp()
    await t.declare([QueueSpec(q, queue_arguments=dict(_FULL))])
    app = _app(amqp_url, q, task_queues=[Queue(q, queue_arguments=dict(_FULL))])
    add = app.tasks["blocking.add"]

    def run() -> None:
        add.delay(1, 1)
        with pytest.raises(Nacked):
            add.delay(2, 2)  # not retried through the transport: the broker said no

    try:
        await asyncio.to_thread(run)
        assert await t.queue_sizes([q]) == {q: 1}
    finally:
        await asyncio.to_thread(app.close)


async def test_rpc_results_get_the_portal_backends_reply_queue(
    amqp_url: str, make_amqp: MakeTransport
) -> None:
    q = qname("rpc")
    app = _app(amqp_url, q, result_backend="rpc://")
    add = app.tasks["blocking.add"]

    def run() -> str:
        add.delay(1, 1)
        add.delay(2, 2)
        oid: str = app.run_sync(app.aget_backend()).reply_queue
        return oid

    try:
        oid = await asyncio.to_thread(run)
        t = await make_amqp()
        got = await drain(t, [q], 2)
        assert [d.envelope.properties.get("reply_to") for d in got] == [oid, oid]
        await t.ack(got)
    finally:
        await asyncio.to_thread(app.close)


def _no_portal(*args: Any, **kwargs: Any) -> Any:
    for arg in args:
        getattr(arg, "close", lambda: None)()  # no "coroutine never awaited" warning
    raise AssertionError("the portal's loop was used")


async def test_the_transports_publish_raises_when_refused(make_amqp: MakeTransport) -> None:
    """The asyncio path keeps the same guarantee: a nacked message is not reported sent."""
    t = await make_amqp(max_retries=0)
    q = qname("asyncfull")
    await t.declare([QueueSpec(q, queue_arguments=dict(_FULL))])
    await t.publish([out(q, b"fits")])
    with pytest.raises(ConnectionError):
        await t.publish([out(q, b"refused")])
    assert await t.queue_sizes([q]) == {q: 1}


async def test_heartbeats_keep_the_transports_publishing_connection(
    make_amqp: MakeTransport,
) -> None:
    t = await make_amqp(heartbeat=1)
    assert isinstance(t, AMQPTransport)
    q = qname("beat")
    await t.declare([QueueSpec(q)])
    await t.publish([out(q, b"1")])
    first = t._publisher
    assert first is not None and first.is_open
    await asyncio.sleep(3.5)  # RabbitMQ closes a connection silent for two intervals
    assert first.is_open and t._publisher is first
    await t.publish([out(q, b"2")])
    got = await drain(t, [q], 2)
    assert bodies(got) == [b"1", b"2"]
    await t.ack(got)


async def test_a_blocking_connection_idle_past_its_heartbeats_is_replaced(
    amqp_url: str, make_amqp: MakeTransport
) -> None:
    made = blocking_publisher(amqp_url, {"heartbeat": 1})
    assert made is not None
    t = await make_amqp()
    q = qname("idlebeat")
    await t.declare([QueueSpec(q)])
    try:
        assert made.publish([out(q, b"1")])
        await asyncio.sleep(3.5)  # nobody answered the broker's heartbeats: it closed it
        assert made.publish([out(q, b"2")])
    finally:
        made.close()
    got = await drain(t, [q], 2)
    assert bodies(got) == [b"1", b"2"]
    await t.ack(got)


async def test_without_confirms_both_paths_still_deliver(
    amqp_url: str, make_amqp: MakeTransport
) -> None:
    t = await make_amqp(confirm_publish=False)
    q = qname("noconfirm")
    await t.declare([QueueSpec(q)])
    await t.publish([out(q, b"async")])
    made = blocking_publisher(amqp_url, {"confirm_publish": False})
    assert made is not None
    try:
        assert made.publish([out(q, b"sync")])
    finally:
        made.close()
    got = await drain(t, [q], 2)
    assert sorted(bodies(got)) == [b"async", b"sync"]
    await t.ack(got)


async def test_broker_pool_limit_caps_the_connections(
    amqp_url: str, make_amqp: MakeTransport
) -> None:
    t = await make_amqp()
    q = qname("pool")
    await t.declare([QueueSpec(q)])
    app = _app(amqp_url, q, broker_pool_limit=1, broker_pool_acquire_timeout=0.2)
    publisher = app._blocking.publisher(app)
    assert isinstance(publisher, AMQPBlockingPublisher)
    held = publisher._checkout()  # the only connection, busy
    try:
        with pytest.raises(OperationalError, match="broker_pool_limit"):
            publisher.publish([out(q, b"waits, then gives up")])
    finally:
        publisher._idle.append(held)
    assert publisher.publish([out(q, b"free again")])
    assert len(publisher._all) == 1
    await asyncio.to_thread(app.close)
    got = await drain(t, [q], 1)
    assert bodies(got) == [b"free again"]
    await t.ack(got)
