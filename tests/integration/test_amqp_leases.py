"""Deliveries held longer than RabbitMQ's consumer_timeout: leases (``_amqp_lease``).

``test_long_hold_outlives_the_broker_consumer_timeout`` lowers the broker's global
``consumer_timeout`` to 3 s (and ``channel_tick_interval`` to 0.5 s so it is checked often) for
about ten seconds and restores both afterwards; a raw control channel shows the timeout bites.
Set CELERIAC_TEST_NO_BROKER_SETTINGS=1 to skip it on a broker others use for long holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import aiormq
import pytest

from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.testing.contract.transport import WAIT, MakeTransport, bodies, out, qname
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import rabbitmqctl

pytestmark = [pytest.mark.amqp, pytest.mark.slow]

# Fixtures shared with the AMQP contract tests (session vhost, transport factory).
amqp_url = amqp_fixtures.amqp_url
amqp_vhost = amqp_fixtures.amqp_vhost
make_amqp = amqp_fixtures.make_amqp


def _env(name: str) -> str:
    return rabbitmqctl("eval", f"application:get_env(rabbit, {name}).").strip()


def _set_env(name: str, value: str) -> None:
    rabbitmqctl("eval", f"application:set_env(rabbit, {name}, {value}).")


@pytest.fixture
def short_broker_timeout(amqp_vhost: str) -> Iterator[None]:
    """Broker consumer_timeout 3 s, checked every 0.5 s, for this test only."""
    if os.environ.get("CELERIAC_TEST_NO_BROKER_SETTINGS") == "1":
        pytest.skip("CELERIAC_TEST_NO_BROKER_SETTINGS=1: not touching broker settings")
    saved = {name: _env(name) for name in ("consumer_timeout", "channel_tick_interval")}
    try:
        _set_env("channel_tick_interval", "500")
        _set_env("consumer_timeout", "3000")
        yield
    finally:
        for name, value in saved.items():
            if value.startswith("{ok,"):
                _set_env(name, value[len("{ok,") : -1])
            else:
                rabbitmqctl("eval", f"application:unset_env(rabbit, {name}).")


async def test_long_hold_outlives_the_broker_consumer_timeout(
    short_broker_timeout: None, make_amqp: MakeTransport, amqp_url: str
) -> None:
    t = await make_amqp(consumer_timeout=3, lease_timeout=2, release_idle_after=60)
    other = await make_amqp()
    assert isinstance(t, AMQPTransport)
    q, q2, control_q = qname("long"), qname("buffered"), qname("control")
    await t.publish([out(q, b"long"), out(q2, b"w1"), out(q2, b"w2"), out(control_q, b"c")])
    [held] = await t.fetch([q], limit=1, timeout=WAIT)
    [w1] = await t.fetch([q2], limit=1, timeout=WAIT)  # w2 stays in the buffer, unfetched
    await t.ack([w1])
    consumer = t._consumer
    control = await aiormq.connect(amqp_url)
    channel = await control.channel()
    arrived: asyncio.Queue[object] = asyncio.Queue()
    await channel.basic_qos(prefetch_count=1)
    await channel.basic_consume(control_q, arrived.put)
    await arrived.get()  # held unacked: the broker will close this channel
    deadline = time.monotonic() + 9  # three broker timeouts
    while time.monotonic() < deadline:
        assert await other.fetch([q], limit=1, timeout=0.5) == []  # never given to anyone else
    assert channel.is_closed, "control: the broker's consumer_timeout did not fire"
    await control.close()
    assert t._consumer is consumer and consumer is not None and consumer.alive  # never closed
    await t.ack([held])
    assert await other.fetch([q], limit=1, timeout=1.0) == []
    assert await t.queue_sizes([q]) == {q: 0}
    [w2] = await t.fetch([q2], limit=1, timeout=WAIT)  # the buffered one is still there
    assert w2.envelope.body == b"w2"
    await t.ack([w2])


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    from celeriac.engines.amqp.broker import AMQPTransport

    async def main(url, queue):
        t = AMQPTransport(url, options={"consumer_timeout": 0.6, "lease_timeout": 3})
        await t.connect()
        [d] = await t.fetch([queue], limit=1, timeout=10)
        while t._held[d.tag].lease is None:
            await asyncio.sleep(0.05)
        print("leased", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_leased_message_comes_back_once_when_its_holder_is_killed(
    make_amqp: MakeTransport, amqp_url: str
) -> None:
    t = await make_amqp()
    q = qname("killed")
    await t.publish([out(q, b"job")])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, amqp_url, q], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 20)
        assert line.strip() == "leased"
        assert await t.fetch([q], limit=1, timeout=1.0) == []  # the live holder keeps it
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed_at = time.monotonic()
        back = await t.fetch([q], limit=5, timeout=WAIT)
        assert bodies(back) == [b"job"] and back[0].redelivered
        assert time.monotonic() - killed_at < 3 + 2  # within lease_timeout (plus slack)
        await t.ack(back)
        assert await t.fetch([q], limit=5, timeout=4.0) == []  # exactly one copy came back
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


async def test_requeue_and_dead_letter_of_leased_deliveries(make_amqp: MakeTransport) -> None:
    t = await make_amqp(consumer_timeout=0.6, lease_timeout=2)
    assert isinstance(t, AMQPTransport)
    q = qname("lease-settle")
    await t.publish([out(q, b"again"), out(q, b"poison")])
    got = await t.fetch([q], limit=2, timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while any(t._held[d.tag].lease is None for d in got) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    again, poison = sorted(got, key=lambda d: d.envelope.body)
    await t.reject([again], requeue=True)
    await t.dead_letter(poison, "bad")
    [back] = await t.fetch([q], limit=5, timeout=WAIT)
    assert back.envelope == again.envelope and back.redelivered
    [dead] = await t.list_dead()
    assert (dead.reason, dead.queue, dead.envelope) == ("bad", q, poison.envelope)
    await t.ack([back])
