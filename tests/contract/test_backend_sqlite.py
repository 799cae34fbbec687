"""SQLiteBackend: the backend contract plus file, process and locking behaviour."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import states
from celeriac.backends import backend_from_url
from celeriac.backends.base import ChordPart, ResultBackend
from celeriac.engines.sqlite.connection import file_in_url
from celeriac.engines.sqlite.results import SQLiteBackend
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.serializers import JSON
from celeriac.testing.contract.backend import BackendContract, BackendFactory, make_meta

_SPAWN = multiprocessing.get_context("spawn")


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _new(path: Path, expires: float | None = 3600, **options: Any) -> SQLiteBackend:
    return SQLiteBackend(_url(path), serializer=JSON, expires=expires, options=options)


@pytest.fixture
async def make_backend(tmp_path: Path) -> AsyncIterator[BackendFactory]:
    """Factory of connected instances on one fresh database file."""
    path = tmp_path / "results.sqlite"
    made: list[SQLiteBackend] = []

    async def make(*, expires: float | None) -> ResultBackend:
        backend = _new(path, expires)
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def backend(make_backend: BackendFactory) -> ResultBackend:
    """A connected instance on the test's own file."""
    return await make_backend(expires=3600)


class TestSQLiteBackendContract(BackendContract):
    """The shared contract, run against SQLiteBackend."""


# -- helpers run in child processes (spawned, so they must be importable) -------------


def _child_store_later(path: str, task_id: str, delay: float) -> None:
    """Open the database, wait, then store a SUCCESS document."""

    async def main() -> None:
        backend = SQLiteBackend(f"sqlite:///{path}", serializer=JSON, expires=3600)
        await backend.connect()
        await asyncio.sleep(delay)
        await backend.store([(task_id, make_meta(task_id, result="from child"))])
        await backend.close()

    asyncio.run(main())


def _child_chord(path: str, gid: str, indexes: list[int], size: int, go: Any, out: Any) -> None:
    """Report chord parts once all children pass barrier ``go``; put wins on ``out``."""

    async def main() -> list[list[ChordPart]]:
        backend = SQLiteBackend(f"sqlite:///{path}", serializer=JSON, expires=3600)
        await backend.connect()
        await asyncio.to_thread(go.wait, 60)
        won = []
        for index in indexes:
            done = await backend.chord_part_done(gid, index, (f"t{index}", "SUCCESS", index), size)
            if done is not None:
                won.append(done)
        await backend.close()
        return won

    out.put(asyncio.run(main()))


# -- tests ---------------------------------------------------------------------------


def test_url_paths() -> None:
    """SQLAlchemy's conventions: three slashes relative, four absolute, bare = default."""
    assert file_in_url("sqlite:///rel.db") == "rel.db"
    assert file_in_url("sqlite:///sub/rel.db") == "sub/rel.db"
    assert file_in_url("sqlite:////abs/x.db") == "/abs/x.db"
    assert file_in_url("sqlite://") == "celeriac.sqlite"
    assert file_in_url("sqlite:///my%20file.db") == "my file.db"
    with pytest.raises(ImproperlyConfigured):
        file_in_url("sqlite://host/x.db")
    with pytest.raises(ImproperlyConfigured):
        file_in_url("redis://localhost")


async def test_bare_url_uses_default_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:// keeps results in ./celeriac.sqlite, in WAL mode."""
    monkeypatch.chdir(tmp_path)
    backend = SQLiteBackend("sqlite://", serializer=JSON, expires=None)
    await backend.store([("t", make_meta("t"))])  # connects on first use
    await backend.close()
    with sqlite3.connect(tmp_path / "celeriac.sqlite") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM celeriac_result").fetchone()[0] == 1


async def test_schema_is_idempotent_and_coexists(tmp_path: Path) -> None:
    """Connecting twice (or beside other tables, like the transport's) keeps data."""
    path = tmp_path / "shared.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE celeriac_message (id INTEGER PRIMARY KEY)")
    first = _new(path)
    await first.store([("t", make_meta("t"))])
    await first.close()
    second = _new(path)
    await second.connect()
    await second.connect()
    doc = (await second.get(["t"]))[0]
    assert doc is not None and doc["task_id"] == "t" and doc["result"] == 42
    await second.close()
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"celeriac_message", "celeriac_result", "celeriac_group", "celeriac_chord"} <= names


async def test_store_sweeps_expired_rows(tmp_path: Path) -> None:
    """store() deletes expired rows opportunistically, without cleanup()."""
    path = tmp_path / "sweep.sqlite"
    short = _new(path, 0.05)
    await short.store([(f"old{i}", make_meta(f"old{i}")) for i in range(3)])
    await asyncio.sleep(0.1)
    writer = _new(path, sweep_interval=0)
    await writer.store([("new", make_meta("new"))])
    await short.close()
    await writer.close()
    with sqlite3.connect(path) as conn:
        rows = [row[0] for row in conn.execute("SELECT task_id FROM celeriac_result")]
    assert rows == ["new"]


async def test_cleanup_counts_expired(tmp_path: Path) -> None:
    """cleanup() deletes expired documents, groups and chord states and counts them."""
    path = tmp_path / "cleanup.sqlite"
    # Neither sweeps on store: under load the second store may come after the expiry.
    short = _new(path, 0.05, sweep_interval=3600)
    eternal = _new(path, None, sweep_interval=3600)
    await short.store([("a", make_meta("a")), ("b", make_meta("b"))])
    await short.save_group("g", ["a", "b"])
    await short.chord_part_done("c", 0, ("a", states.SUCCESS, 1), 2)
    await eternal.store([("k", make_meta("k"))])
    await asyncio.sleep(0.1)
    assert await eternal.cleanup() == 4
    assert await eternal.cleanup() == 0
    assert (await eternal.get(["k"]))[0] is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM celeriac_chord_part").fetchone()[0] == 0
    await short.close()
    await eternal.close()


async def test_wait_woken_by_other_process(tmp_path: Path) -> None:
    """A document stored by another process ends a wait promptly (polling, no spin)."""
    path, tid = tmp_path / "xproc.sqlite", str(uuid.uuid4())
    backend = _new(path)
    await backend.connect()
    child = _SPAWN.Process(target=_child_store_later, args=(str(path), tid, 0.3))
    child.start()
    try:
        started = time.monotonic()
        doc = await backend.wait(tid, 60)
        assert doc is not None and doc["result"] == "from child"
        assert time.monotonic() - started < 30
    finally:
        await asyncio.to_thread(child.join, 30)
        await backend.close()
    assert child.exitcode == 0


async def test_chord_exactly_one_winner_across_processes(tmp_path: Path) -> None:
    """Three processes report overlapping parts concurrently; exactly one completes it."""
    path, gid, size = tmp_path / "chord.sqlite", str(uuid.uuid4()), 150
    setup = _new(path)
    await setup.connect()  # create the schema before the race
    await setup.close()
    go, out = _SPAWN.Barrier(3), _SPAWN.Queue()
    shares = [list(range(0, 100)), list(range(50, size)), list(range(size - 1, -1, -1))]
    children = [
        _SPAWN.Process(target=_child_chord, args=(str(path), gid, share, size, go, out))
        for share in shares
    ]
    for child in children:
        child.start()
    results = [await asyncio.to_thread(out.get, True, 60) for _ in children]
    for child in children:
        await asyncio.to_thread(child.join, 30)
    winners = [won for result in results for won in result]
    assert len(winners) == 1
    assert winners[0] == [(f"t{i}", "SUCCESS", i) for i in range(size)]


async def test_event_loop_not_blocked_by_locked_database(tmp_path: Path) -> None:
    """While another connection holds the write lock, store() waits off the loop."""
    path = tmp_path / "locked.sqlite"
    backend = _new(path)
    await backend.connect()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    store = asyncio.create_task(backend.store([("t", make_meta("t"))]))
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.02)
        ticks += 1
    assert ticks == 10 and not store.done()
    holder.execute("COMMIT")
    holder.close()
    await asyncio.wait_for(store, 10)
    assert (await backend.get(["t"]))[0] is not None
    await backend.close()


async def test_close_fails_pending_waits(tmp_path: Path) -> None:
    """Closing an instance ends its pending waits with ConnectionError."""
    backend = _new(tmp_path / "close.sqlite")
    waiter = asyncio.create_task(backend.wait("t", 30))
    await asyncio.sleep(0.1)
    await backend.close()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiter, 5)
    await backend.close()  # idempotent


async def test_writer_on_other_thread_wakes_waiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance on another thread's loop in this process wakes waiters here."""
    path, tid = tmp_path / "thread.sqlite", "t"
    backend = _new(path)
    await backend.connect()
    # Blind the poller to other connections' commits: only the in-process wake-up
    # (which forces a check of the notified ids) can end this wait.
    blind_poll = backend._poll
    monkeypatch.setattr(
        backend, "_poll", lambda conn, waited, forced: blind_poll(conn, forced, forced)
    )

    async def write() -> None:
        other = _new(path)
        await other.store([(tid, make_meta(tid, states.STARTED, None))])
        await asyncio.sleep(0.3)
        await other.store([(tid, make_meta(tid, result="threaded"))])
        await other.close()

    waiter = asyncio.create_task(backend.wait(tid, 60))
    await asyncio.sleep(0.1)
    await asyncio.to_thread(asyncio.run, write())
    doc = await asyncio.wait_for(waiter, 10)
    assert doc is not None and doc["result"] == "threaded"
    await backend.close()


def test_negative_expires_refused(tmp_path: Path) -> None:
    """A negative result_expires is a configuration error (refused for every engine by the
    one factory that makes backends)."""
    with pytest.raises(ImproperlyConfigured, match="result_expires must not be negative"):
        backend_from_url(_url(tmp_path / "x.sqlite"), serializer=JSON, expires=-1)
