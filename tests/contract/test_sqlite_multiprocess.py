"""SQLiteTransport across real processes: crash recovery, wakeups, competing consumers."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from celeriac.engines.sqlite.broker import SQLiteTransport
from celeriac.testing.contract.transport import out, qname
from celeriac.transport.base import Delivery

LEASE = {"lease_timeout": 1.0}

# Children run this preamble, then their own body; argv: URL, queue.
PREAMBLE = """
import asyncio, json, sys, time
from celeriac.protocol.envelope import Envelope
from celeriac.transport.base import Outgoing
from celeriac.engines.sqlite.broker import SQLiteTransport
URL, QUEUE = sys.argv[1], sys.argv[2]
"""

FETCH_AND_HANG = """
async def main():
    t = SQLiteTransport(URL, options={"lease_timeout": 1.0})
    got = await t.fetch([QUEUE], limit=10, timeout=30)
    print(len(got), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""

PUBLISH_LATER = """
async def main():
    t = SQLiteTransport(URL)
    await t.connect()
    await asyncio.sleep(0.3)
    await t.publish([Outgoing(Envelope(b"from-child"), routing_key=QUEUE)])
    print(time.time(), flush=True)
    await t.close()
asyncio.run(main())
"""

CONSUME_ALL = """
async def main():
    t = SQLiteTransport(URL)
    seen = []
    while batch := await t.fetch([QUEUE], limit=5, timeout=1.0):
        seen += [d.envelope.body.decode() for d in batch]
        await t.ack(batch)
    await t.close()
    print(json.dumps(seen), flush=True)
asyncio.run(main())
"""


async def spawn(body: str, url: str, queue: str) -> asyncio.subprocess.Process:
    code = textwrap.dedent(PREAMBLE) + textwrap.dedent(body)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, url, queue, stdout=asyncio.subprocess.PIPE
    )


async def read_line(proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    return line.decode().strip()


@pytest.fixture
async def parent(tmp_path: Path) -> AsyncIterator[SQLiteTransport]:
    transport = SQLiteTransport(f"sqlite:///{tmp_path}/mp.sqlite", options=LEASE)
    await transport.connect()
    yield transport
    await transport.close()


async def test_killed_consumer_deliveries_come_back_after_lease(parent: SQLiteTransport) -> None:
    q = qname("crash")
    await parent.publish([out(q, str(i).encode()) for i in range(3)])
    child = await spawn(FETCH_AND_HANG, parent.url, q)
    try:
        assert await read_line(child) == "3"
        assert await parent.queue_sizes([q]) == {q: 0}  # all leased to the child
    finally:
        child.send_signal(signal.SIGKILL)
        await child.wait()
    got: list[Delivery] = []
    deadline = time.monotonic() + 20
    while len(got) < 3 and time.monotonic() < deadline:
        got += await parent.fetch([q], limit=10, timeout=1)
    assert sorted(d.envelope.body for d in got) == [b"0", b"1", b"2"]
    assert all(d.redelivered for d in got)


async def test_publish_in_another_process_wakes_a_waiting_fetch(parent: SQLiteTransport) -> None:
    q = qname("cross-wake")
    child = await spawn(PUBLISH_LATER, parent.url, q)
    try:
        got = await parent.fetch([q], limit=1, timeout=30)
        received = time.time()
        published = float(await read_line(child))
    finally:
        await child.wait()
    assert [d.envelope.body for d in got] == [b"from-child"]
    assert received - published < 5  # woken by the change, not by the 30 s timeout


async def test_competing_processes_never_share_a_message(parent: SQLiteTransport) -> None:
    q = qname("compete")
    expected = [str(i) for i in range(300)]
    await parent.publish([out(q, body.encode()) for body in expected])
    children = [await spawn(CONSUME_ALL, parent.url, q) for _ in range(3)]
    try:
        outputs = [json.loads(await read_line(child, timeout=60)) for child in children]
    finally:
        for child in children:
            await child.wait()
    everything = [body for seen in outputs for body in seen]
    assert sorted(everything, key=int) == expected  # each exactly once
    assert await parent.queue_sizes([q]) == {q: 0}


_OPEN_AT_ONCE = """
import asyncio, sys, time
from celeriac.engines.sqlite.broker import SQLiteTransport
from celeriac.engines.sqlite.results import SQLiteBackend
from celeriac.protocol.serializers import JSON

async def main(url, start):
    time.sleep(max(0.0, start - time.time()))  # every process opens the new file together
    transport = SQLiteTransport(url)
    backend = SQLiteBackend(url, serializer=JSON, expires=60)
    await transport.connect()
    await backend.connect()
    await transport.close()
    await backend.close()

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


def test_many_processes_can_create_the_same_new_file_at_once(tmp_path: Path) -> None:
    # A client and a worker started side by side both create ./celeriac.sqlite: switching
    # a brand-new file to WAL can fail with "database is locked" unless it is retried.
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    start = time.time() + 1.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT_ONCE, url, str(start)], stderr=subprocess.PIPE
        )
        for _ in range(10)
    ]
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 10, "\n".join(errors)
