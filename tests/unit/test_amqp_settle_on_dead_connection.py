"""Settling on a channel whose connection died with its frame buffer full.

aiormq queues every frame on its connection's bounded write queue; only the connection's
writer drains it. When the connection dies, a frame waiting for room there waits for ever.
A settle must end when the channel closes instead: it held the channel's lock, and every
later settle of the worker waited behind it (a stalled worker in the RabbitMQ-cluster fault
test, where the node the worker was connected to was killed).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("aiormq")

from aiormq import exceptions as amqp_errors

from celeriac.engines.amqp.channels import ConsumerChannel, Held
from celeriac.protocol.envelope import Envelope
from celeriac.transport.base import Delivery


class _DeadConnectionChannel:
    """What a channel of a dead connection looks like to us: a write queue with no room that
    nothing drains, and a ``closing`` future the test resolves."""

    def __init__(self) -> None:
        self.closing: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.write_queue: asyncio.Queue[object] = asyncio.Queue(maxsize=1)
        self.write_queue.put_nowait(object())
        self.is_closed = False
        self.on_consumer_cancel_callbacks: set[Any] = set()

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        await self.write_queue.put(("ack", tag, multiple))  # as aiormq: waits for room


async def test_a_settle_stuck_on_a_dead_connection_ends_when_the_channel_closes() -> None:
    raw = _DeadConnectionChannel()
    channel = ConsumerChannel(raw, prefetch=10)  # type: ignore[arg-type]
    held = Held(Delivery(Envelope(b"[]"), "celery", "t1"), 1, 0.0, {}, channel)
    channel.outstanding[1] = held
    settling = asyncio.ensure_future(channel.settle([held], "ack"))
    await asyncio.sleep(0.05)
    assert not settling.done()  # waiting for room in the buffer, as aiormq makes it
    raw.closing.set_exception(amqp_errors.AMQPConnectionError("connection reset"))
    with pytest.raises(amqp_errors.ChannelInvalidStateError):
        await asyncio.wait_for(settling, 5)
    assert not channel.lock.locked()  # the next settle is not stuck behind it
