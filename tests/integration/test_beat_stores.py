"""Schedule store contract, run against memory, SQLite, real Redis and real PostgreSQL.

Lease: acquire, renew, expiry, steal, release. Ticks: the compare-and-set claim only
works for the lease holder and succeeds exactly once under concurrency; a revert only
undoes the reverting beat's own claim. Memory and SQLite get a fake clock; Redis and
PostgreSQL keep time themselves, so their expiries are real (short) waits.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.beat.entry import Entry
from celeriac.beat.scheduler import Beat, BeatOptions
from celeriac.beat.stores import ScheduleStore, store_from_url
from celeriac.engines.memory.schedules import MemoryState, MemoryStore
from celeriac.engines.postgres.schedules import SQLStore
from celeriac.engines.sqlite.schedules import SQLiteStore
from celeriac.schedules import schedule
from tests.contract.test_transport_redis import REDIS_URL, delete_prefixed, redis_or_skip
from tests.sql_fixtures import PG_URL, fresh_schema

TTL = 1.0


@dataclass
class Backend:
    """Makes stores that share one place, and lets time pass for their leases."""

    make_store: Callable[[str], ScheduleStore]
    advance: Callable[[float], Awaitable[None]]
    made: list[ScheduleStore] = field(default_factory=list)

    def make(self, namespace: str = "ns") -> ScheduleStore:
        store = self.make_store(namespace)
        self.made.append(store)
        return store


class Clock:
    def __init__(self) -> None:
        self.value = 1_750_000_000.0

    def __call__(self) -> float:
        return self.value

    async def advance(self, seconds: float) -> None:
        self.value += seconds


@pytest.fixture(
    params=["memory", "sqlite", pytest.param("redis", marks=pytest.mark.redis), "postgresql"]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgresql":
        async with fresh_schema() as schema:
            options = {"schema": schema}
            made = Backend(
                lambda ns: store_from_url(PG_URL, namespace=ns, options=options), asyncio.sleep
            )
            yield made
            for store in made.made:
                await store.close()
        return
    clock = Clock()
    if request.param == "memory":
        state = MemoryState()
        made = Backend(
            lambda ns: MemoryStore(namespace=ns, state=state, clock=clock), clock.advance
        )
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'beat.sqlite'}"
        made = Backend(lambda ns: SQLiteStore(url, namespace=ns, clock=clock), clock.advance)
    else:
        raw = await redis_or_skip()
        prefix = f"test-beat-{uuid.uuid4().hex[:10]}:"
        options = {"global_keyprefix": prefix}
        made = Backend(
            lambda ns: store_from_url(REDIS_URL, namespace=ns, options=options), asyncio.sleep
        )
    yield made
    for store in made.made:
        await store.close()
    if request.param == "redis":
        await delete_prefixed(raw, prefix)
        await raw.aclose()  # type: ignore[attr-defined]  # stubs predate redis 5


async def test_store_for_url_schemes(tmp_path: Path) -> None:
    assert isinstance(store_from_url("memory://x"), MemoryStore)
    assert isinstance(store_from_url(str(tmp_path / "beat-file")), SQLiteStore)  # Celery's -s
    assert isinstance(store_from_url(f"sqla+sqlite:///{tmp_path}/f.db"), SQLiteStore)
    for url in (PG_URL, "postgres://u@h/d", "sqla+postgresql://u@h/d", "db+postgresql://u@h/d"):
        store = store_from_url(url)
        assert isinstance(store, SQLStore) and store.url.startswith("postgres")
    with pytest.raises(Exception, match="no beat schedule store"):
        store_from_url("amqp://guest@localhost//")


async def test_lease_acquire_renew_expire_steal_release(backend: Backend) -> None:
    a, b = backend.make(), backend.make()
    assert await a.lease_holder() is None
    assert await a.acquire_lease("a", TTL)
    assert not await b.acquire_lease("b", TTL)
    assert await b.lease_holder() == "a"
    await backend.advance(TTL * 0.6)
    assert await a.acquire_lease("a", TTL)  # renewed: lasts TTL from now
    await backend.advance(TTL * 0.6)
    assert not await b.acquire_lease("b", TTL)
    assert await b.lease_holder() == "a"
    await backend.advance(TTL * 1.2)  # "a" stopped renewing
    assert await b.lease_holder() is None
    assert await b.acquire_lease("b", TTL)  # taken over
    assert not await a.acquire_lease("a", TTL)
    await a.release_lease("a")  # not a's any more: no effect
    assert await a.lease_holder() == "b"
    await b.release_lease("b")
    assert await a.lease_holder() is None
    assert await a.acquire_lease("a", TTL)  # at once, no expiry to wait for


async def test_claim_is_a_compare_and_set_for_the_lease_holder_only(backend: Backend) -> None:
    a, b = backend.make(), backend.make()
    assert await a.acquire_lease("a", TTL)
    assert await a.claim("a", "e", None, 100.0)
    assert not await a.claim("a", "e", None, 200.0)  # exists already
    assert not await b.claim("b", "e", 100.0, 200.0)  # right value, not the holder
    assert await a.claim("a", "e", 100.0, 200.0)
    assert not await a.claim("a", "e", 100.0, 300.0)  # stale expected value
    assert await b.load() == {"e": 200.0}
    await backend.advance(TTL * 1.2)
    assert not await a.claim("a", "e", 200.0, 300.0)  # lease expired, even if nobody took it
    assert await b.load() == {"e": 200.0}


async def test_revert_only_undoes_the_reverting_beats_own_claim(backend: Backend) -> None:
    a, b = backend.make(), backend.make()
    assert await a.acquire_lease("a", TTL)
    assert await a.claim("a", "e", None, 100.0)
    assert await a.claim("a", "e", 100.0, 200.0)
    assert not await b.revert("b", "e", 200.0, 100.0)  # "b" did not claim 200
    assert not await a.revert("a", "e", 150.0, 100.0)  # not the current value
    assert await a.revert("a", "e", 200.0, 100.0)
    assert await a.load() == {"e": 100.0}
    assert await a.claim("a", "e", 100.0, 200.0)  # the reverted tick can be claimed again
    assert await a.claim("a", "new", None, 5.0)
    assert await a.revert("a", "new", 5.0, None)
    assert await a.load() == {"e": 200.0}


async def test_times_round_trip_exactly(backend: Backend) -> None:
    store = backend.make()
    assert await store.acquire_lease("a", TTL)
    values = [time.time(), 1748858400.123456, 1e9 + 1 / 3]
    previous = None
    for value in values:
        assert await store.claim("a", "e", previous, value)
        assert (await store.load())["e"] == value
        previous = value


async def test_namespaces_are_separate(backend: Backend) -> None:
    one, two = backend.make("one"), backend.make("two")
    assert await one.acquire_lease("a", TTL)
    assert await two.acquire_lease("b", TTL)
    assert await two.claim("b", "e", None, 1.0)
    assert await one.load() == {}
    assert await one.lease_holder() == "a"


async def test_concurrent_lease_and_claims_have_exactly_one_winner(backend: Backend) -> None:
    stores = [backend.make() for _ in range(8)]
    for store in stores:
        await store.connect()
    taken = await asyncio.gather(*(s.acquire_lease(f"h{i}", 5.0) for i, s in enumerate(stores)))
    assert sum(taken) == 1
    holder = f"h{taken.index(True)}"
    assert await stores[0].claim(holder, "e", None, 1.0)
    for round_ in range(5):
        old, new = 1.0 + round_, 2.0 + round_
        won = await asyncio.gather(*(s.claim(holder, "e", old, new) for s in stores))
        assert sum(won) == 1, won
    assert await stores[0].load() == {"e": 6.0}


async def test_beat_survives_an_unreachable_store(caplog: pytest.LogCaptureFixture) -> None:
    store = store_from_url("redis://127.0.0.1:1/0", namespace="down")  # nothing listens
    sent: list[str] = []

    async def send(entry: Entry, task_id: str) -> None:
        sent.append(task_id)

    app = Celery("down", broker="memory://beat-down", set_as_current=False)
    opts = BeatOptions(max_interval=0.05, lease_seconds=0.2, renew_interval=0.05)
    beat = Beat(app, store, [Entry("e", "t", schedule(0.05))], options=opts, send=send)
    stop = asyncio.Event()
    runner = asyncio.create_task(beat.run(stop))
    await asyncio.sleep(0.5)
    assert not runner.done() and not beat.is_leader and sent == []
    stop.set()
    await asyncio.wait_for(runner, 10)
    assert caplog.text.count("unreachable, retrying") == 1
