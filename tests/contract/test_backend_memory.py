"""MemoryBackend: the backend contract plus in-process sharing across threads and loops."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest

from celeriac import states
from celeriac.backends import backend_from_url
from celeriac.backends.base import ChordPart, ResultBackend
from celeriac.engines.memory.results import MemoryBackend, reset_memory_stores
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import JSON
from celeriac.testing.contract.backend import BackendContract, BackendFactory, make_meta


def _url() -> str:
    return f"memory://{uuid.uuid4().hex}"


def _new(url: str, expires: float | None = 3600) -> MemoryBackend:
    return MemoryBackend(url, serializer=JSON, expires=expires)


@pytest.fixture
async def make_backend() -> AsyncIterator[BackendFactory]:
    """Factory of connected instances sharing one fresh memory:// store."""
    url = _url()
    made: list[MemoryBackend] = []

    async def make(*, expires: float | None) -> ResultBackend:
        backend = _new(url, expires)
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()
    reset_memory_stores(url)


@pytest.fixture
async def backend(make_backend: BackendFactory) -> ResultBackend:
    """A connected instance on the test's own store."""
    return await make_backend(expires=3600)


class TestMemoryBackendContract(BackendContract):
    """The shared contract, run against MemoryBackend."""


def _in_thread(coro: Coroutine[Any, Any, None]) -> threading.Thread:
    """Run a coroutine on its own event loop in a new thread."""
    thread = threading.Thread(target=asyncio.run, args=(coro,))
    thread.start()
    return thread


async def test_same_url_shares_store_other_urls_do_not() -> None:
    """Instances with one URL share data; another name is a different store."""
    url = _url()
    a, b, c = _new(url), _new(url), _new(_url())
    await a.store([("t", make_meta("t"))])
    assert (await b.get(["t"]))[0] == (await a.get(["t"]))[0]
    assert await c.get(["t"]) == [None]
    reset_memory_stores(url)
    assert await _new(url).get(["t"]) == [None]


async def test_default_store_url() -> None:
    """Bare memory:// is one shared store; other schemes are refused."""
    try:
        await _new("memory://").store([("default-t", make_meta("default-t"))])
        assert (await _new("memory:///").get(["default-t"]))[0] is not None
    finally:
        reset_memory_stores("memory://")
    with pytest.raises(ImproperlyConfigured):
        _new("redis://localhost")


async def test_wait_woken_by_writer_on_other_thread_and_loop() -> None:
    """A writer on another thread's event loop wakes a waiter here promptly."""
    url, tid = _url(), "cross-thread"
    waiter = _new(url)

    async def write() -> None:
        await asyncio.sleep(0.1)
        await _new(url).store([(tid, make_meta(tid, result="from thread"))])

    thread = _in_thread(write())
    started = time.monotonic()
    doc = await waiter.wait(tid, 30)
    assert doc is not None and doc["result"] == "from thread"
    assert time.monotonic() - started < 5
    thread.join(5)
    reset_memory_stores(url)


async def test_chord_exactly_one_winner_across_threads() -> None:
    """Threads on separate loops report parts (with duplicates); one gets the result."""
    url, gid, size = _url(), "g", 60
    parts: list[ChordPart] = [(f"t{i}", states.SUCCESS, i) for i in range(size)]
    winners: list[list[ChordPart]] = []
    barrier = threading.Barrier(4)

    async def report(offset: int) -> None:
        backend = _new(url)
        barrier.wait()
        for i in range(size):
            index = (i + offset * 15) % size
            done = await backend.chord_part_done(gid, index, parts[index], size)
            if done is not None:
                winners.append(done)

    threads = [_in_thread(report(k)) for k in range(4)]
    for thread in threads:
        thread.join(10)
    assert len(winners) == 1 and winners[0] == parts
    reset_memory_stores(url)


async def test_cleanup_counts_expired() -> None:
    """cleanup() removes expired documents, groups and chord states and counts them."""
    url = _url()
    short, long = _new(url, 0.05), _new(url, None)
    await short.store([("a", make_meta("a")), ("b", make_meta("b"))])
    await short.save_group("g", ["a", "b"])
    await short.chord_part_done("c", 0, ("a", states.SUCCESS, 1), 2)
    await long.store([("k", make_meta("k"))])
    await asyncio.sleep(0.1)
    assert await long.cleanup() == 4
    assert await long.cleanup() == 0
    assert (await long.get(["k"]))[0] is not None
    reset_memory_stores(url)


async def test_expired_chord_state_starts_over() -> None:
    """Parts recorded before the chord state expired are not counted."""
    url = _url()
    backend = _new(url, 0.05)
    assert await backend.chord_part_done("g", 0, ("a", states.SUCCESS, 1), 2) is None
    await asyncio.sleep(0.1)
    assert await backend.chord_part_done("g", 1, ("b", states.SUCCESS, 2), 2) is None
    done = await backend.chord_part_done("g", 0, ("a", states.SUCCESS, 1), 2)
    assert done == [("a", states.SUCCESS, 1), ("b", states.SUCCESS, 2)]
    reset_memory_stores(url)


async def test_close_fails_pending_waits() -> None:
    """Closing an instance ends its pending waits with ConnectionError."""
    url = _url()
    backend = _new(url)
    waiter = asyncio.create_task(backend.wait("t", 30))
    await asyncio.sleep(0.05)
    await backend.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiter, 5)
    reset_memory_stores(url)


def test_negative_expires_refused() -> None:
    """A negative result_expires is a configuration error (refused for every engine by the
    one factory that makes backends)."""
    with pytest.raises(ImproperlyConfigured, match="result_expires must not be negative"):
        backend_from_url(_url(), serializer=JSON, expires=-1)
