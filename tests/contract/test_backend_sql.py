"""SQLBackend on PostgreSQL: the backend contract plus tables, NOTIFY, polling and races.

Needs the PostgreSQL server of ``CELERIAC_TEST_POSTGRES_URL`` (see ``tests/services.py``).
Every test works in its own schema, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from celeriac import states
from celeriac.backends import backend_from_url
from celeriac.backends.base import ResultBackend
from celeriac.engines.postgres.results import SQLBackend
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import JSON
from celeriac.testing.contract.backend import BackendContract, BackendFactory, make_meta
from tests.sql_fixtures import PG_URL, fresh_schema, postgres_or_skip, schema_url


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_schema() as name:
        yield name


@pytest.fixture
async def make_backend(schema: str) -> AsyncIterator[BackendFactory]:
    """Factory of connected backends on this test's schema."""
    made: list[SQLBackend] = []

    async def make(*, expires: float | None, **options: Any) -> ResultBackend:
        backend = SQLBackend(
            f"db+{PG_URL}", serializer=JSON, expires=expires, options={"schema": schema, **options}
        )
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def backend(make_backend: BackendFactory) -> ResultBackend:
    return await make_backend(expires=3600)


@pytest.fixture
async def raw() -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
    conn = await postgres_or_skip()
    yield conn
    await conn.close()


class TestSQLBackendContract(BackendContract):
    """The shared contract, run against SQLBackend on PostgreSQL."""


class TestSQLBackendPollingOnly(BackendContract):
    """The contract again with LISTEN switched off: waits rely on polling alone."""

    @pytest.fixture
    async def backend(self, make_backend: BackendFactory) -> ResultBackend:
        return await make_backend(expires=3600, listen=False, poll_interval=0.2)  # type: ignore[call-arg]


def _tid() -> str:
    return str(uuid.uuid4())


def test_urls_and_schemes() -> None:
    for url in (f"db+{PG_URL}", PG_URL, "db+postgres://u@h/d", "postgresql+psycopg://u@h/d"):
        backend = backend_from_url(url, serializer=JSON, expires=None)
        assert isinstance(backend, SQLBackend) and not backend.url.startswith("db+")
    with pytest.raises(ImproperlyConfigured, match="PostgreSQL"):
        SQLBackend("mysql://root@localhost/test", serializer=JSON, expires=None)
    with pytest.raises(ImproperlyConfigured, match="negative"):
        backend_from_url(PG_URL, serializer=JSON, expires=-1)


async def test_tables_in_schema_given_by_url(
    schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """``?schema=`` puts Celery's tables (and celeriac's chord tables) there; the result
    column holds the result alone, encoded; the row expires ``result_expires`` after."""
    backend = backend_from_url(schema_url(schema, "db+"), serializer=JSON, expires=60)
    tid = _tid()
    await backend.store([(tid, make_meta(tid, result="x"))])
    await backend.close()
    cur = await raw.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
    )
    names = {row[0] for row in await cur.fetchall()}
    assert names == {
        "celery_taskmeta",
        "celery_tasksetmeta",
        "celeriac_chord",
        "celeriac_chord_part",
    }
    query = sql.SQL(
        "SELECT status, result, celeriac_expires_at - extract(epoch FROM date_done)"
        " FROM {}.celery_taskmeta"
    )
    cur = await raw.execute(query.format(sql.Identifier(schema)))
    status, result, ttl = (await cur.fetchall())[0]
    assert status == "SUCCESS" and json.loads(result) == "x" and abs(float(ttl) - 60) < 5


async def test_store_notifies_ready_ids_once_per_batch(
    make_backend: BackendFactory, schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """One NOTIFY carries the ready ids of a batch; unready documents are not announced."""
    backend = await make_backend(expires=3600)
    assert isinstance(backend, SQLBackend)
    await raw.execute(sql.SQL("LISTEN {}").format(sql.Identifier(backend._channel)))
    ready, started = _tid(), _tid()
    await backend.store(
        [(ready, make_meta(ready)), (started, make_meta(started, states.STARTED, None))]
    )
    got = [n.payload async for n in raw.notifies(timeout=10.0, stop_after=1)]
    got += [n.payload async for n in raw.notifies(timeout=0.3)]
    assert [json.loads(payload) for payload in got] == [[ready]]


async def test_notify_wakes_a_waiter_long_before_any_poll(make_backend: BackendFactory) -> None:
    """With the safety poll a minute away, only the NOTIFY can end this wait in time."""
    backend = await make_backend(expires=3600, safety_interval=60)  # type: ignore[call-arg]
    writer = await make_backend(expires=3600)
    tid = _tid()
    waiter = asyncio.create_task(backend.wait(tid, 60))
    await asyncio.sleep(0.5)  # listening by now, and past the first checks
    await writer.store([(tid, make_meta(tid, result="notified"))])
    doc = await asyncio.wait_for(waiter, 20)
    assert doc is not None and doc["result"] == "notified"


async def test_notify_payloads_stay_under_the_limit(
    make_backend: BackendFactory, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """A big batch of long ids is announced in several notifications, each under 8000 bytes."""
    backend = await make_backend(expires=3600)
    assert isinstance(backend, SQLBackend)
    await raw.execute(sql.SQL("LISTEN {}").format(sql.Identifier(backend._channel)))
    ids = [f"{i:04d}-" + "x" * 140 for i in range(300)]
    await backend.store([(tid, make_meta(tid)) for tid in ids])
    payloads = [n.payload async for n in raw.notifies(timeout=10.0, stop_after=1)]
    payloads += [n.payload async for n in raw.notifies(timeout=0.5)]
    assert all(len(p.encode()) < 8000 for p in payloads) and len(payloads) > 1
    assert sorted(tid for p in payloads for tid in json.loads(p)) == ids


async def test_wait_recovers_when_listen_connection_dies(
    make_backend: BackendFactory, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """Killing the LISTEN connection does not lose a result stored meanwhile."""
    backend = await make_backend(expires=3600, poll_interval=0.1)  # type: ignore[call-arg]
    writer = await make_backend(expires=3600)
    assert isinstance(backend, SQLBackend)
    tid = _tid()
    waiter = asyncio.create_task(backend.wait(tid, 30))
    await asyncio.sleep(0.3)
    assert backend._watcher.listening
    await raw.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE %s"
        " AND pid <> pg_backend_pid()",
        [f'LISTEN "{backend._channel}"'],
    )
    await writer.store([(tid, make_meta(tid, result="after kill"))])
    doc = await asyncio.wait_for(waiter, 10)
    assert doc is not None and doc["result"] == "after kill"


async def test_chord_exactly_one_winner_across_connections(make_backend: BackendFactory) -> None:
    """Many instances race on one chord over several connections, with duplicates: one winner."""
    instances = [await make_backend(expires=3600) for _ in range(4)]
    size, gid = 60, _tid()
    await instances[0].set_chord_size(gid, size)
    calls = [
        instances[(i + copy) % 4].chord_part_done(gid, i, (f"t{i}", states.SUCCESS, i), None)
        for copy in range(3)
        for i in range(size)
    ]
    results = await asyncio.gather(*calls)
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert winners[0] == [(f"t{i}", states.SUCCESS, i) for i in range(size)]


async def test_set_chord_size_and_reuse(make_backend: BackendFactory) -> None:
    """The stored size wins over the caller's; a reused id starts over after set_chord_size."""
    backend = await make_backend(expires=3600)
    gid = _tid()
    await backend.set_chord_size(gid, 2)
    assert await backend.chord_part_done(gid, 0, ("a", states.SUCCESS, 1), 1) is None
    parts = await backend.chord_part_done(gid, 1, ("b", states.SUCCESS, 2), None)
    assert parts == [("a", states.SUCCESS, 1), ("b", states.SUCCESS, 2)]
    assert await backend.chord_part_done(gid, 1, ("b", states.SUCCESS, 2), None) is None
    await backend.set_chord_size(gid, 1)
    assert await backend.chord_part_done(gid, 0, ("c", states.SUCCESS, 3), None) == [
        ("c", states.SUCCESS, 3)
    ]


async def test_cleanup_counts_and_sweep(
    make_backend: BackendFactory, schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """cleanup() deletes expired documents, groups and chords (with parts) and counts them."""
    short = await make_backend(expires=0.05, sweep_interval=3600)  # type: ignore[call-arg]
    eternal = await make_backend(expires=None)
    await short.store([("a", make_meta("a")), ("b", make_meta("b"))])
    await short.save_group("g", ["a", "b"])
    await short.chord_part_done("c", 0, ("a", states.SUCCESS, 1), 2)
    await eternal.store([("k", make_meta("k"))])
    await asyncio.sleep(0.1)
    assert await eternal.cleanup() == 4
    assert await eternal.cleanup() == 0
    assert (await eternal.get(["k"]))[0] is not None
    query = sql.SQL("SELECT count(*) FROM {}.celeriac_chord_part")
    cur = await raw.execute(query.format(sql.Identifier(schema)))
    assert (await cur.fetchone()) == (0,)
    # store() sweeps now and then by itself.
    sweeper = await make_backend(expires=None, sweep_interval=0)  # type: ignore[call-arg]
    await short.store([("old", make_meta("old"))])
    await asyncio.sleep(0.1)
    await sweeper.store([("new", make_meta("new"))])
    cur = await raw.execute(
        sql.SQL("SELECT task_id FROM {}.celery_taskmeta ORDER BY task_id").format(
            sql.Identifier(schema)
        )
    )
    assert [row[0] for row in await cur.fetchall()] == ["k", "new"]


async def test_concurrent_first_connects_create_tables_once(schema: str) -> None:
    """Several instances connecting at once on an empty schema all succeed."""
    backends = [SQLBackend(schema_url(schema), serializer=JSON, expires=None) for _ in range(4)]
    await asyncio.gather(*(b.connect() for b in backends))
    tid = _tid()
    await backends[0].store([(tid, make_meta(tid))])
    assert (await backends[3].get([tid]))[0] is not None
    for backend in backends:
        await backend.close()


async def test_wait_does_not_query_in_a_loop(
    make_backend: BackendFactory, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """While listening, a long wait reads the table a handful of times, not continuously."""
    backend = await make_backend(expires=3600)
    assert isinstance(backend, SQLBackend)
    calls = 0
    fetch = backend._fetch_ready

    async def counting(ids: Any) -> dict[str, bytes]:
        nonlocal calls
        calls += 1
        return await fetch(ids)

    backend._watcher._fetch = counting
    started = time.monotonic()
    assert await backend.wait(_tid(), 2.0) is None
    assert time.monotonic() - started >= 1.9
    assert calls <= 5, calls


async def test_survives_its_pooled_connections_being_killed(
    make_backend: BackendFactory, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """A server restart leaves the pool dead: the next calls reconnect instead of failing."""
    backend = await make_backend(expires=3600)
    tid = _tid()
    await backend.store([(tid, make_meta(tid, result="before"))])
    cur = await raw.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'celeriac' AND query LIKE %s",
        [f"%{backend._settings.schema}%"],  # type: ignore[attr-defined]
    )
    assert ((await cur.fetchone()) or (0,))[0] >= 1
    await asyncio.sleep(0.1)
    await backend.store([(tid, make_meta(tid, result="after"))])
    doc = (await backend.get([tid]))[0]
    assert doc is not None and doc["result"] == "after"
