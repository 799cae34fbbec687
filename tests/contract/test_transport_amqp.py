"""AMQPTransport: the transport contract plus what only RabbitMQ does.

Needs the RabbitMQ server of ``CELERIAC_TEST_AMQP_URL`` and ``rabbitmqctl`` (see
``tests/services.py``). The session gets its own vhost ``celeriac-test-<uuid>``, deleted
at the end; every test also has its own dead-letter and revoke queues.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.engines.amqp.connection import AMQPOptions, connection_url, properties_for
from celeriac.engines.amqp.delay import stamp
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.envelope import Envelope
from celeriac.testing.contract.transport import (
    WAIT,
    MakeTransport,
    TransportContract,
    bodies,
    drain,
    out,
    qname,
)
from celeriac.transport import transport_from_url
from celeriac.transport.base import Outgoing, QueueSpec, Transport
from tests import services

pytestmark = pytest.mark.amqp


@pytest.fixture(scope="session")
def amqp_vhost() -> Iterator[str]:
    """A vhost of our own on the test server for the whole session (deleted afterwards)."""
    with services.amqp_vhost() as vhost:
        yield vhost


@pytest.fixture(scope="session")
def amqp_url(amqp_vhost: str) -> str:
    """The broker URL of the test vhost."""
    return services.amqp_vhost_url(amqp_vhost)


@pytest.fixture
async def make_amqp(amqp_url: str) -> AsyncIterator[MakeTransport]:
    """Factory of connected transports sharing this test's dead-letter and revoke queues."""
    made: list[AMQPTransport] = []
    tag = uuid.uuid4().hex[:10]
    defaults = {"dead_letter_queue": f"dead.{tag}", "revoked_queue": f"revoked.{tag}"}

    async def make(**options: Any) -> Transport:
        transport = AMQPTransport(amqp_url, options={**defaults, **options})
        await transport.connect()
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


class TestAMQPTransport(TransportContract):
    @pytest.fixture
    def make_transport(self, make_amqp: MakeTransport) -> MakeTransport:
        return make_amqp

    @pytest.fixture
    async def transport(self, make_transport: MakeTransport) -> Transport:
        return await make_transport()

    async def test_higher_priority_first_then_fifo(self, transport: Transport) -> None:
        """The contract's test, on a queue declared with ``max_priority`` as AMQP needs."""
        q = qname("prio")
        await transport.declare([QueueSpec(q, max_priority=9)])
        plan = [(0, b"low-1"), (9, b"high-1"), (5, b"mid"), (0, b"low-2"), (9, b"high-2")]
        await transport.publish([out(q, body, priority=p) for p, body in plan])
        got = await drain(transport, [q], 5, limit=5)
        assert bodies(got) == [b"high-1", b"high-2", b"mid", b"low-1", b"low-2"]
        assert [d.envelope.priority for d in got] == [9, 9, 5, 0, 0]


# --- RabbitMQ specifics -----------------------------------------------------------------


async def test_delayed_messages_keep_due_order_and_never_come_early(
    make_amqp: MakeTransport,
) -> None:
    """A few hundred messages with different delays: none early, in due order."""
    producer = await make_amqp()
    consumer = await make_amqp()
    q = qname("eta-order")
    start = time.time()
    due = {i: start + 0.5 + (i * 7919 % 300) / 100 for i in range(300)}  # 0.5 .. 3.5 s
    await producer.publish([out(q, str(i).encode(), not_before=t) for i, t in due.items()])
    arrived: list[tuple[float, int]] = []
    deadline = time.monotonic() + 15
    while len(arrived) < len(due) and time.monotonic() < deadline:
        got = await consumer.fetch([q], limit=100, timeout=1.0)
        now = time.time()
        arrived += [(now, int(d.envelope.body)) for d in got]
        await consumer.ack(got)
    assert sorted(i for _, i in arrived) == sorted(due)
    assert all(at >= due[i] - 0.001 for at, i in arrived)  # never early
    # Due order holds to the 0.1 s tick; allow a little jitter of the broker's TTL hops.
    order = [i for _, i in arrived]
    inversions = [(a, b) for a, b in itertools.pairwise(order) if due[a] > due[b] + 0.3]
    assert not inversions, [(due[a] - start, due[b] - start) for a, b in inversions[:5]]
    assert max(at - due[i] for at, i in arrived) < 3.0  # and not absurdly late


async def test_quorum_queue_consume_requeue_and_delay(make_amqp: MakeTransport) -> None:
    t = await make_amqp()
    q = qname("quorum")
    await t.declare([QueueSpec(q, q, "direct", q, queue_arguments={"x-queue-type": "quorum"})])
    await t.publish([out(q, b"now"), out(q, b"later", not_before=time.time() + 0.3)])
    [first] = await t.fetch([q], limit=1, timeout=WAIT)
    await t.reject([first], requeue=True)
    got = await drain(t, [q], 2)
    assert sorted(bodies(got)) == [b"later", b"now"]
    assert [d.redelivered for d in got if d.envelope.body == b"now"] == [True]
    await t.ack(got)
    assert await t.queue_sizes([q]) == {q: 0}


async def test_delayed_message_to_named_exchange_is_routed_there(
    make_amqp: MakeTransport,
) -> None:
    t = await make_amqp()
    ex, q = qname("eta-ex"), qname("eta-bound")
    await t.declare([QueueSpec(q, ex, "direct", "jobs")])
    await t.publish([Outgoing(Envelope(b"later"), ex, "jobs", time.time() + 0.3)])
    assert await t.queue_sizes([q]) == {q: 1}
    [got] = await drain(t, [q], 1)
    assert (got.envelope.body, got.exchange, got.routing_key) == (b"later", ex, "jobs")
    assert "x-death" not in got.envelope.headers


async def test_binding_arguments_of_headers_exchange_are_not_queue_arguments(
    make_amqp: MakeTransport,
) -> None:
    """A Celery worker declaring the same queue without arguments must not clash."""
    t = await make_amqp()
    ex, q = qname("hx"), qname("hq")
    await t.declare([QueueSpec(q, ex, "headers", queue_arguments={"x-match": "any", "k": 1})])
    await t.declare([QueueSpec(q)])  # no PRECONDITION_FAILED
    await t.publish([Outgoing(Envelope(b"m", {"k": 1}), ex, "")])
    assert bodies(await drain(t, [q], 1)) == [b"m"]


async def test_stale_ack_after_channel_loss_is_harmless(make_amqp: MakeTransport) -> None:
    t = await make_amqp()
    assert isinstance(t, AMQPTransport)
    q = qname("stale")
    await t.publish([out(q, b"one")])
    [first] = await t.fetch([q], limit=1, timeout=WAIT)
    consumer = t._consumer
    assert consumer is not None
    await consumer.channel.close()  # as if the broker closed the channel
    await t.ack([first])  # stale: ignored, nothing sent to another channel
    [again] = await t.fetch([q], limit=1, timeout=WAIT)
    assert again.envelope == first.envelope and again.redelivered
    assert again.tag != first.tag
    await t.ack([again])
    assert await t.queue_sizes([q]) == {q: 0}


async def test_non_contiguous_acks_and_rejects(make_amqp: MakeTransport) -> None:
    t = await make_amqp()
    q = qname("gaps")
    await t.publish([out(q, str(i).encode()) for i in range(10)])
    got = await drain(t, [q], 10)
    await t.ack(got[1::2])  # 1, 3, 5, 7, 9: not a prefix
    await t.reject(got[2::2], requeue=False)  # 2, 4, 6, 8
    await t.ack(got[:1])  # 0: now everything
    other = await make_amqp()
    assert await other.fetch([q], limit=10, timeout=0.5) == []
    assert await other.queue_sizes([q]) == {q: 0}


async def test_idle_consumer_gives_buffered_messages_back(make_amqp: MakeTransport) -> None:
    greedy = await make_amqp(release_idle_after=0.3)
    q = qname("idle")
    await greedy.publish([out(q, str(i).encode()) for i in range(5)])
    assert len(await greedy.fetch([q], limit=1, timeout=WAIT)) == 1  # four more buffered
    other = await make_amqp()
    got = await drain(other, [q], 4)
    assert sorted(bodies(got)) == [b"1", b"2", b"3", b"4"]


async def test_early_arrival_is_delayed_again(make_amqp: MakeTransport) -> None:
    """A message whose not-before stamp is ahead of this host's clock waits again."""
    t = await make_amqp()
    q = qname("skew")
    due = time.time() + 1.0
    env = Envelope(b"skewed", {"id": "x"})
    # Published as if already due, but stamped with a later not-before (another host's clock).
    assert isinstance(t, AMQPTransport)
    channel = await t._session.channel("publish")
    await t._topology.ensure_queue(q)
    properties = properties_for(env, stamp(due))
    await channel.basic_publish(env.body, routing_key=q, properties=properties)
    got = await drain(t, [q], 1)
    assert bodies(got) == [b"skewed"]
    assert time.time() >= due - 0.01


async def test_revokes_survive_restart_and_sync_on_first_read(make_amqp: MakeTransport) -> None:
    writer = await make_amqp()
    await writer.revoke(["a", "b"], expires=time.time() + 60)
    await writer.close()
    reader = await make_amqp()
    assert {"a", "b"} <= await reader.revoked()
    await reader.revoke(["c"], expires=time.time() + 60)
    later = await make_amqp()
    assert {"a", "b", "c"} <= await later.revoked()


# --- URLs and options (no broker needed) -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("amqp://guest:guest@localhost//", "amqp://guest:guest@localhost:5672/?"),
        ("amqp://guest:guest@localhost/", "amqp://guest:guest@localhost:5672/?"),
        ("amqp://", "amqp://guest:guest@localhost:5672/?"),
        ("pyamqp://u:p%40ss@h:5673/v1", "amqp://u:p%40ss@h:5673/v1?"),
        ("amqp://u:p@h/%2Fnested", "amqp://u:p@h:5672/%2Fnested?"),
        ("amqps://u:p@h/v?cafile=/ca.pem", "amqps://u:p@h:5671/v?cafile=%2Fca.pem&"),
    ],
)
def test_url_forms(url: str, expected: str) -> None:
    assert connection_url(url, heartbeat=30, name="n").startswith(expected)
    assert "heartbeat=30" in connection_url(url, heartbeat=30, name="n")


def test_options_are_converted_and_checked() -> None:
    opts = AMQPOptions.from_options(
        {"confirm_publish": "false", "prefetch_count": "7", "consumer_timeout": 60, "other": 1}
    )
    assert (opts.confirm_publish, opts.prefetch_count, opts.renew_after) == (False, 7, 30.0)
    with pytest.raises(ImproperlyConfigured):
        AMQPOptions.from_options({"prefetch_count": 0})
    with pytest.raises(ImproperlyConfigured):
        AMQPTransport("redis://localhost")
    for scheme in ("amqp", "amqps", "pyamqp"):
        made = transport_from_url(f"{scheme}://guest@h//", {"prefetch_count": 5})
        assert isinstance(made, AMQPTransport) and made.url.startswith(scheme)
