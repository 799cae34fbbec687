"""A consumer process killed with SIGKILL while holding a delivery: the message comes back.

Uses the test Redis server (``tests/services.py``) with a unique key prefix.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from celeriac.engines.redis.broker import RedisTransport
from celeriac.protocol.envelope import Envelope
from celeriac.transport.base import Outgoing
from tests.contract.test_transport_redis import REDIS_URL, delete_prefixed, redis_or_skip

pytestmark = pytest.mark.redis

HOLDER = """
import asyncio, sys
from celeriac.engines.redis.broker import RedisTransport

async def main(url, prefix, queue):
    t = RedisTransport(url, options={"global_keyprefix": prefix, "lease_timeout": 1.0})
    await t.connect()
    got = []
    while not got:
        got = await t.fetch([queue], limit=1, timeout=5)
    print("HELD", got[0].tag, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    raw = await redis_or_skip()
    value = f"test-{uuid.uuid4().hex[:12]}:"
    yield value
    await delete_prefixed(raw, value)
    await raw.aclose()


async def _transport(prefix: str, **options: Any) -> RedisTransport:
    transport = RedisTransport(REDIS_URL, options={"global_keyprefix": prefix, **options})
    await transport.connect()
    return transport


async def test_sigkilled_consumer_delivery_comes_back(prefix: str) -> None:
    queue = "crash"
    survivor = await _transport(prefix, lease_timeout=1.0)
    try:
        env = Envelope(b"precious", headers={"id": "job-1"})
        await survivor.publish([Outgoing(env, routing_key=queue)])
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, REDIS_URL, prefix, queue],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            assert line.startswith("HELD")
            assert await survivor.queue_sizes([queue]) == {queue: 0}  # leased by the child
            proc.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
        finally:
            proc.kill()
            proc.wait()
        got = []
        while not got and time.monotonic() - killed_at < 15:
            got = await survivor.fetch([queue], limit=1, timeout=0.5)
        elapsed = time.monotonic() - killed_at
        assert [d.envelope.body for d in got] == [b"precious"]
        assert got[0].redelivered is True
        # lease_timeout (1 s) + one sweep interval (1/3 s) + slack for a busy machine.
        assert elapsed < 10
        await survivor.ack(got)
    finally:
        await survivor.close()


async def test_dead_consumer_is_not_restored_twice_by_concurrent_sweepers(prefix: str) -> None:
    """Several live consumers sweep at once; the dead one's messages come back once."""
    queue = "crash-many"
    dead = await _transport(prefix, lease_timeout=0.6)
    await dead.publish([Outgoing(Envelope(b"%d" % i), routing_key=queue) for i in range(30)])
    held = []
    while len(held) < 30:
        held += await dead.fetch([queue], limit=30, timeout=1)
    await dead.leases.stop_heartbeat()
    sweepers = [await _transport(prefix, lease_timeout=0.6, sweep_interval=0.1) for _ in range(3)]
    seen: list[bytes] = []

    async def consume(t: RedisTransport) -> None:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and len(seen) < 30:
            batch = await t.fetch([queue], limit=10, timeout=0.3)
            seen.extend(d.envelope.body for d in batch)
            await t.ack(batch)

    try:
        await asyncio.gather(*(consume(t) for t in sweepers))
        await asyncio.sleep(1.0)  # give any duplicate restore time to show up
        for t in sweepers:
            batch = await t.fetch([queue], limit=10, timeout=0.1)
            seen.extend(d.envelope.body for d in batch)
        assert sorted(seen) == sorted(b"%d" % i for i in range(30))
    finally:
        for t in sweepers:
            await t.close()
        await dead.close()
