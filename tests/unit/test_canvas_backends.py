"""Chord sizes in the memory and SQLite result backends (``set_chord_size``).

Workers do not know a chord's size: the client records it before publishing the last
header task, and workers report parts with ``size=None``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from celeriac import states
from celeriac.backends import ResultBackend
from celeriac.engines.memory.results import MemoryBackend
from celeriac.engines.sqlite.results import SQLiteBackend
from celeriac.protocol.serializers import get_serializer


@pytest.fixture(params=["memory", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ResultBackend]:
    serializer = get_serializer("json")
    store: ResultBackend
    if request.param == "memory":
        store = MemoryBackend(f"memory://{uuid.uuid4().hex}", serializer=serializer, expires=60)
    else:
        store = SQLiteBackend(f"sqlite:///{tmp_path / 'r.db'}", serializer=serializer, expires=60)
    await store.connect()
    yield store
    await store.close()


def _part(i: int) -> tuple[str, str, int]:
    return (f"t{i}", states.SUCCESS, i * 10)


async def test_unknown_size_never_completes(backend: ResultBackend) -> None:
    gid = uuid.uuid4().hex
    for i in range(5):
        assert await backend.chord_part_done(gid, i, _part(i), None) is None


async def test_parts_before_the_size_count(backend: ResultBackend) -> None:
    """A Celery client sets the size just before the last header publish."""
    gid = uuid.uuid4().hex
    assert await backend.chord_part_done(gid, 1, _part(1), None) is None
    await backend.set_chord_size(gid, 3)
    assert await backend.chord_part_done(gid, 2, _part(2), None) is None
    done = await backend.chord_part_done(gid, 0, _part(0), None)
    assert done is not None and [tuple(p) for p in done] == [_part(0), _part(1), _part(2)]
    assert await backend.chord_part_done(gid, 0, _part(0), None) is None  # redelivered: ignored


async def test_stored_size_wins_over_the_callers(backend: ResultBackend) -> None:
    gid = uuid.uuid4().hex
    await backend.set_chord_size(gid, 2)
    assert await backend.chord_part_done(gid, 0, _part(0), 1) is None
    assert await backend.chord_part_done(gid, 1, _part(1), 1) is not None


async def test_sqlite_database_from_before_chord_sizes_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE celeriac_chord (group_id TEXT PRIMARY KEY,"
            " done INTEGER NOT NULL DEFAULT 0, expires_at REAL)"
        )
    store = SQLiteBackend(f"sqlite:///{path}", serializer=get_serializer("json"), expires=None)
    await store.connect()
    try:
        await store.set_chord_size("g", 1)
        assert await store.chord_part_done("g", 0, _part(0), None) is not None
    finally:
        await store.close()
