"""The transport contract for MemoryTransport, plus what only the memory store does."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from celeriac.engines.memory.broker import MemoryTransport, reset_store
from celeriac.protocol.envelope import Envelope
from celeriac.testing.contract.transport import MakeTransport, TransportContract, out, qname
from celeriac.transport.base import Outgoing, Transport


@pytest.fixture
def memory_url() -> Iterator[str]:
    url = f"memory://contract-{uuid.uuid4().hex}"
    yield url
    reset_store(url)


@pytest.fixture
async def make_memory(memory_url: str) -> AsyncIterator[MakeTransport]:
    made: list[MemoryTransport] = []

    async def make(**options: Any) -> Transport:
        transport = MemoryTransport(memory_url, options=options)
        await transport.connect()
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


class TestMemoryTransport(TransportContract):
    @pytest.fixture
    def make_transport(self, make_memory: MakeTransport) -> MakeTransport:
        return make_memory

    @pytest.fixture
    async def transport(self, make_transport: MakeTransport) -> Transport:
        return await make_transport()


def run_loop_in_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


async def test_publish_from_another_threads_loop_wakes_fetch(memory_url: str) -> None:
    """A client on a background "portal" loop publishes; the worker loop wakes at once."""
    q = qname("thread")
    worker = MemoryTransport(memory_url)
    await worker.connect()
    loop, thread = run_loop_in_thread()
    client = MemoryTransport(memory_url)

    async def publish_later() -> None:
        await client.connect()
        await asyncio.sleep(0.2)
        await client.publish([out(q, b"cross-thread")])

    try:
        future = asyncio.run_coroutine_threadsafe(publish_later(), loop)
        start = time.monotonic()
        got = await worker.fetch([q], limit=1, timeout=30)
        assert [d.envelope.body for d in got] == [b"cross-thread"]
        assert time.monotonic() - start < 10
        future.result(timeout=10)
    finally:
        asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        await worker.close()


async def test_consumer_whose_loop_died_loses_its_leases(memory_url: str) -> None:
    """A consumer whose loop stops (no close, no heartbeat) is recovered after the lease."""
    q = qname("dead-loop")
    options = {"lease_timeout": 0.5}
    loop, thread = run_loop_in_thread()
    doomed = MemoryTransport(memory_url, options=options)

    async def take() -> int:
        await doomed.publish([out(q, b"orphan")])
        return len(await doomed.fetch([q], limit=1, timeout=10))

    assert asyncio.run_coroutine_threadsafe(take(), loop).result(timeout=10) == 1
    loop.call_soon_threadsafe(loop.stop)  # the "crash": its heartbeat task never runs again
    thread.join(timeout=10)
    survivor = MemoryTransport(memory_url, options=options)
    try:
        got = await survivor.fetch([q], limit=1, timeout=10)
        assert [d.envelope.body for d in got] == [b"orphan"]
        assert got[0].redelivered is True
    finally:
        await survivor.close()
        loop.close()


async def test_store_is_isolated_from_caller_mutation(make_memory: MakeTransport) -> None:
    transport = await make_memory()
    q = qname("copy")
    env = Envelope(b"body", {"list": [1]}, properties={"priority": 1})
    await transport.publish([Outgoing(env, routing_key=q)])
    env.headers["list"].append(2)
    [got] = await transport.fetch([q], limit=1, timeout=5)
    assert got.envelope.headers == {"list": [1]}
    got.envelope.headers["list"].append(3)
    await transport.reject([got], requeue=True)
    [again] = await transport.fetch([q], limit=1, timeout=5)
    assert again.envelope.headers == {"list": [1]}


async def test_same_url_shares_a_store_and_reset_forgets_it() -> None:
    name = f"memory://shared-{uuid.uuid4().hex}"
    q = qname("shared")
    a, b = MemoryTransport(name), MemoryTransport(name + "/")
    await a.connect()
    await b.connect()
    await a.publish([out(q)])
    assert await b.queue_sizes([q]) == {q: 1}
    reset_store(name)
    c = MemoryTransport(name)
    await c.connect()
    assert await c.queue_sizes([q]) == {q: 0}
    for t in (a, b, c):
        await t.close()


async def test_localhost_is_the_default_store() -> None:
    q = qname("localhost")
    a, b = MemoryTransport("memory://"), MemoryTransport("memory://localhost/")
    try:
        await a.connect()
        await a.publish([out(q)])
        assert await b.queue_sizes([q]) == {q: 1}
        assert await b.purge([q]) == 1
    finally:
        await a.close()
        await b.close()


async def test_close_ends_a_waiting_fetch(make_memory: MakeTransport) -> None:
    transport = await make_memory()
    waiter = asyncio.create_task(transport.fetch([qname("closing")], limit=1, timeout=60))
    await asyncio.sleep(0.1)
    await transport.close()
    assert await asyncio.wait_for(waiter, 10) == []
    with pytest.raises(RuntimeError, match="closed"):
        await transport.queue_sizes(["x"])
