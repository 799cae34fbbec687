"""The transport contract for SQLiteTransport, plus what only the SQLite file does."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import threading
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from celeriac.engines.sqlite import queue_store
from celeriac.engines.sqlite.broker import SQLiteTransport
from celeriac.engines.sqlite.connection import connect, sqlite_path
from celeriac.engines.sqlite.results import SQLiteBackend
from celeriac.engines.sqlite.schedules import SQLiteStore
from celeriac.exceptions import ImproperlyConfigured, SerializationError
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import JSON
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


def _modes(folder: Path) -> dict[str, int]:
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()}


async def _write_once(role: str, url: str) -> dict[str, int]:
    """Open ``url`` as the SQLite ``role``, write once; the files' modes while it is open."""
    if role == "broker":
        broker = SQLiteTransport(url)
        await broker.publish([out(qname("private"), b"secret arguments")])
        files = _modes(broker.path.parent)
        await broker.close()
    elif role == "results":
        backend = SQLiteBackend(url, serializer=JSON, expires=None)
        await backend.store([("t", {"status": "SUCCESS", "result": "secret"})])
        files = _modes(backend.path.parent)
        await backend.close()
    else:
        store = SQLiteStore(url)
        assert await store.acquire_lease("me", 10)
        files = _modes(store.path.parent)
        await store.close()
    return files


@pytest.mark.parametrize("role", ["broker", "results", "beat"])
async def test_a_new_file_is_readable_by_its_owner_only(tmp_path: Path, role: str) -> None:
    """It holds task arguments and results (issue #16): 0600, and so are its WAL and SHM."""
    old_umask = os.umask(0o022)  # the usual umask, which leaves new files world-readable
    try:
        modes = await _write_once(role, f"sqlite:///{tmp_path}/new.sqlite")
    finally:
        os.umask(old_umask)
    assert modes == {"new.sqlite": 0o600, "new.sqlite-wal": 0o600, "new.sqlite-shm": 0o600}


async def test_an_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    path.touch(mode=0o640)
    await _write_once("broker", f"sqlite:///{path}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_hot_queries_use_the_partial_indexes(tmp_path: Path) -> None:
    conn = connect(tmp_path / "plan.sqlite", busy_timeout=5.0, schema=queue_store.SCHEMA)
    queries = [
        (queue_store.SQL_HAS_WORK, ("q", "q", 1.0)),
        (queue_store.SQL_PROMOTE, ("q", 1.0)),
        (queue_store.SQL_CANDIDATES, ("q", 10)),
        (queue_store.SQL_NEXT_DUE, ("q",)),
        (queue_store.SQL_WAITING, ("q", "q")),
        (queue_store.SQL_HELD_BY, ("consumer",)),
    ]
    try:
        for sql, params in queries:
            plan = conn.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
            details = [row[-1] for row in plan if "celeriac_messages" in row[-1]]
            assert details, (sql, plan)
            for detail in details:  # no full scan, no sort: only the partial indexes
                assert "USING INDEX celeriac_messages_" in detail or "COVERING INDEX" in detail
            assert not any("TEMP B-TREE" in row[-1] for row in plan), (sql, plan)
    finally:
        conn.close()


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
    executor = transport._file._executor
    assert executor is not None
    executor.submit(gate.wait, 10)  # hold the database thread
    fetch = asyncio.create_task(transport.fetch([q], limit=1, timeout=10))
    deadline = time.monotonic() + 10
    while executor._work_queue.qsize() == 0:  # wait until the claim is queued
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    fetch.cancel()
    gate.set()  # the claim now runs and leases the message to nobody who will see it
    with pytest.raises(asyncio.CancelledError):
        await fetch
    other = await make_sqlite()
    got = await other.fetch([q], limit=1, timeout=10)
    assert [d.envelope.body for d in got] == [b"not lost"]
