"""The transport contract for SQLiteTransport, plus what only the SQLite file does."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from celeriac.engines.sqlite import queue_store as engine_sql
from celeriac.engines.sqlite.broker import SQLiteTransport, sqlite_path
from celeriac.engines.sqlite.queue_store import Engine
from celeriac.exceptions import ImproperlyConfigured, SerializationError
from celeriac.protocol.envelope import Envelope
from celeriac.testing.contract.transport import MakeTransport, TransportContract, out, qname
from celeriac.transport.base import Outgoing, Transport


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/broker.sqlite"


@pytest.fixture
async def make_sqlite(db_url: str) -> AsyncIterator[MakeTransport]:
    made: list[SQLiteTransport] = []

    async def make(**options: Any) -> Transport:
        transport = SQLiteTransport(db_url, options=options)
        await transport.connect()
        made.append(transport)
        return transport

    yield make
    for transport in made:
        await transport.close()


class TestSQLiteTransport(TransportContract):
    @pytest.fixture
    def make_transport(self, make_sqlite: MakeTransport) -> MakeTransport:
        return make_sqlite

    @pytest.fixture
    async def transport(self, make_transport: MakeTransport) -> Transport:
        return await make_transport()


def test_url_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite://") == tmp_path / "celeriac.sqlite"
    assert sqlite_path("sqlite:///data/b.db") == tmp_path / "data" / "b.db"
    assert sqlite_path("sqlite:////abs/path.db") == Path("/abs/path.db")
    assert sqlite_path("sqla+sqlite:////abs/path.db?timeout=3") == Path("/abs/path.db")
    for bad in ("sqlite:///:memory:", "redis://localhost", "sqlite://host/x.db"):
        with pytest.raises(ImproperlyConfigured):
            sqlite_path(bad)


async def test_bare_url_uses_celeriac_sqlite_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    transport = SQLiteTransport("sqlite://")
    await transport.connect()
    await transport.close()
    assert (tmp_path / "celeriac.sqlite").exists()


async def test_unopenable_file_is_a_configuration_error(tmp_path: Path) -> None:
    transport = SQLiteTransport(f"sqlite:///{tmp_path}/missing-dir/b.db")
    with pytest.raises(ImproperlyConfigured, match="missing-dir"):
        await transport.connect()


async def test_schema_is_wal_prefixed_and_idempotent(
    make_sqlite: MakeTransport, tmp_path: Path
) -> None:
    await make_sqlite()
    await make_sqlite()  # creating the schema again is harmless
    with closing(sqlite3.connect(tmp_path / "broker.sqlite")) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
        names = {row[0] for row in rows}
    assert {"celeriac_messages", "celeriac_consumers", "celeriac_dead"} <= names
    assert all(name.startswith("celeriac_") for name in names)


def test_hot_queries_use_the_partial_indexes(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "plan.sqlite", 5.0)
    engine.open()
    queries = [
        (engine_sql.SQL_HAS_WORK, ("q", "q", 1.0)),
        (engine_sql.SQL_PROMOTE, ("q", 1.0)),
        (engine_sql.SQL_CANDIDATES, ("q", 10)),
        (engine_sql.SQL_NEXT_DUE, ("q",)),
        (engine_sql.SQL_WAITING, ("q", "q")),
        (engine_sql.SQL_HELD_BY, ("consumer",)),
    ]
    try:
        for sql, params in queries:
            plan = engine.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            details = [row[-1] for row in plan if "celeriac_messages" in row[-1]]
            assert details, (sql, plan)
            for detail in details:  # no full scan, no sort: only the partial indexes
                assert "USING INDEX celeriac_messages_" in detail or "COVERING INDEX" in detail
            assert not any("TEMP B-TREE" in row[-1] for row in plan), (sql, plan)
    finally:
        engine.close()


async def test_fetch_with_many_delayed_rows(make_sqlite: MakeTransport) -> None:
    transport = await make_sqlite()
    q = qname("delayed-20k")
    later = time.time() + 3600
    await transport.publish([out(q, b"later", not_before=later) for _ in range(20_000)])
    await transport.publish([out(q, b"now", priority=1), out(q, b"soon", not_before=time.time())])
    got = await transport.fetch([q], limit=10, timeout=5)
    assert sorted(d.envelope.body for d in got) == [b"now", b"soon"]
    assert await transport.queue_sizes([q]) == {q: 20_000}


async def test_messages_survive_reopening_the_file(make_sqlite: MakeTransport) -> None:
    q = qname("durable")
    first = await make_sqlite()
    await first.publish([out(q, b"kept", not_before=time.time() + 0.2)])
    await first.close()
    second = await make_sqlite()
    got = await second.fetch([q], limit=1, timeout=10)
    assert [d.envelope.body for d in got] == [b"kept"]


async def test_non_json_headers_are_refused(make_sqlite: MakeTransport) -> None:
    transport = await make_sqlite()
    q = qname("bad-headers")
    with pytest.raises(SerializationError):
        await transport.publish([Outgoing(Envelope(b"x", {"when": object()}), routing_key=q)])
    assert await transport.queue_sizes([q]) == {q: 0}


async def test_close_ends_a_waiting_fetch(make_sqlite: MakeTransport) -> None:
    transport = await make_sqlite()
    waiter = asyncio.create_task(transport.fetch([qname("closing")], limit=1, timeout=60))
    await asyncio.sleep(0.1)
    await transport.close()
    assert await asyncio.wait_for(waiter, 10) == []
    with pytest.raises(RuntimeError, match="closed"):
        await transport.queue_sizes(["x"])


async def test_claim_finishing_after_cancel_is_given_back(make_sqlite: MakeTransport) -> None:
    transport = await make_sqlite()
    assert isinstance(transport, SQLiteTransport)
    q = qname("cancelled")
    await transport.publish([out(q, b"not lost")])
    gate = threading.Event()
    assert transport._executor is not None
    transport._executor.submit(gate.wait, 10)  # hold the database thread
    fetch = asyncio.create_task(transport.fetch([q], limit=1, timeout=10))
    deadline = time.monotonic() + 10
    while transport._executor._work_queue.qsize() == 0:  # wait until the claim is queued
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    fetch.cancel()
    gate.set()  # the claim now runs and leases the message to nobody who will see it
    with pytest.raises(asyncio.CancelledError):
        await fetch
    other = await make_sqlite()
    got = await other.fetch([q], limit=1, timeout=10)
    assert [d.envelope.body for d in got] == [b"not lost"]
