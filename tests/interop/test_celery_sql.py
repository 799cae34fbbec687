"""PostgreSQL results shared with the real Celery: its database backend reads what celeriac
writes and celeriac reads what it writes, in Celery's tables, in a schema per test.

Celery runs in this process (its ``DatabaseBackend`` over SQLAlchemy's sync psycopg driver);
no worker is needed, since both sides go through their result backends. Needs the
PostgreSQL server of ``CELERIAC_TEST_POSTGRES_URL``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from celeriac import Celery as Celeriac
from celeriac import states
from celeriac.engines.postgres.results import SQLBackend
from celeriac.exceptions import ContentDisallowed
from celeriac.protocol.result_codec import ResultCodec
from celeriac.protocol.results import make_meta
from celeriac.protocol.serializers import JSON, get_serializer
from tests.sql_fixtures import PG_URL, fresh_schema, postgres_or_skip

celery = pytest.importorskip("celery")
pytestmark = pytest.mark.interop

URL = "db+" + PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
"""One URL for both sides: Celery's SQLAlchemy needs the psycopg (3) driver named."""


def _tid() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_schema() as name:
        yield name


@pytest.fixture
async def raw() -> AsyncIterator[psycopg.AsyncConnection[tuple[Any, ...]]]:
    conn = await postgres_or_skip()
    yield conn
    await conn.close()


def celery_app(schema: str, **settings: Any) -> Any:
    """A Celery app whose database backend uses ``schema`` (its models are process-wide:
    each test configures them afresh)."""
    settings.setdefault("database_table_schemas", {"task": schema, "group": schema})
    return celery.Celery("peer", backend=URL, set_as_current=False, **settings)


@pytest.fixture
async def ours(schema: str) -> AsyncIterator[SQLBackend]:
    backend = SQLBackend(URL, serializer=JSON, expires=3600, options={"schema": schema})
    await backend.connect()
    yield backend
    await backend.close()


async def _tables(raw: psycopg.AsyncConnection[tuple[Any, ...]], schema: str) -> set[str]:
    cur = await raw.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", [schema]
    )
    return {row[0] for row in await cur.fetchall()}


async def test_celery_reads_what_celeriac_writes(ours: SQLBackend, schema: str) -> None:
    done, failed, running, gid = _tid(), _tid(), _tid(), _tid()
    error = {"exc_type": "ValueError", "exc_message": ["boom"], "exc_module": "builtins"}
    await ours.store(
        [
            (done, make_meta(done, states.SUCCESS, {"answer": [4, 2]})),
            (failed, make_meta(failed, states.FAILURE, error, traceback="Traceback: boom")),
            (running, make_meta(running, states.STARTED, {"pid": 7, "hostname": "w@h"})),
        ]
    )
    await ours.save_group(gid, [done, failed])
    app = celery_app(schema)
    result = app.AsyncResult(done)
    assert (result.state, result.get(timeout=5)) == ("SUCCESS", {"answer": [4, 2]})
    assert result.date_done is not None
    bad = app.AsyncResult(failed)
    assert bad.state == "FAILURE" and isinstance(bad.result, ValueError)
    assert bad.result.args == ("boom",) and bad.traceback == "Traceback: boom"
    started = app.AsyncResult(running)
    assert started.state == "STARTED" and started.info == {"pid": 7, "hostname": "w@h"}
    saved = app.GroupResult.restore(gid)
    assert [r.id for r in saved.results] == [done, failed]


async def test_celeriac_reads_what_celery_writes(ours: SQLBackend, schema: str) -> None:
    app = celery_app(schema)
    done, failed, running, gid = _tid(), _tid(), _tid(), _tid()
    app.backend.store_result(done, {"answer": 42}, states.SUCCESS)
    app.backend.mark_as_failure(failed, KeyError("missing"), traceback="Traceback: missing")
    app.backend.mark_as_started(running, pid=3, hostname="celery@h")
    group = celery.result.GroupResult(
        gid, [app.AsyncResult(done), app.AsyncResult(failed)], app=app
    )
    group.save()
    doc, bad, started = await ours.get([done, failed, running])
    assert doc is not None and doc["status"] == "SUCCESS" and doc["result"] == {"answer": 42}
    assert doc["date_done"] and doc["task_id"] == done and doc["children"] == []
    assert bad is not None and bad["result"]["exc_type"] == "KeyError"
    assert bad["traceback"] == "Traceback: missing"
    assert started is not None and started["status"] == "STARTED" and started["date_done"] is None
    assert await ours.restore_group(gid) == [done, failed]


async def test_a_celery_write_wakes_a_celeriac_waiter(schema: str) -> None:
    """The table's trigger notifies Celery's writes too: no wait for the (60 s) safety poll."""
    waiter = SQLBackend(
        URL, serializer=JSON, expires=3600, options={"schema": schema, "safety_interval": 60}
    )
    await waiter.connect()
    app = celery_app(schema)
    tid = _tid()
    try:
        waiting = asyncio.create_task(waiter.wait(tid, 60))
        await asyncio.sleep(0.5)  # listening by now
        started = time.monotonic()
        await asyncio.to_thread(app.backend.store_result, tid, "from celery", states.SUCCESS)
        doc = await asyncio.wait_for(waiting, 30)
        assert doc is not None and doc["result"] == "from celery"
        assert time.monotonic() - started < 10  # woken by the notification
    finally:
        await waiter.close()


async def test_extended_results_both_ways(schema: str) -> None:
    """``result_extended``'s name, args, kwargs, worker, retries and queue cross over."""
    app = celery_app(schema, result_extended=True)
    ours = SQLBackend(URL, serializer=JSON, expires=None, options={"schema": schema})
    mine, theirs = _tid(), _tid()
    extended = {"name": "proj.add", "args": [2, 3], "kwargs": {"z": 1}, "worker": "w@h"}
    try:
        await ours.store(
            [(mine, make_meta(mine, states.SUCCESS, 5, extra={**extended, "retries": 1}))]
        )
        seen = app.AsyncResult(mine)
        assert (seen.name, seen.args, seen.kwargs, seen.worker) == (
            "proj.add",
            [2, 3],
            {"z": 1},
            "w@h",
        )
        assert seen.retries == 1
        request = type("Request", (), {"task": "proj.mul", "args": [6, 7], "kwargs": {},
                                        "hostname": "celery@h", "retries": 0,
                                        "delivery_info": {"routing_key": "celery"},
                                        "group": None, "parent_id": None, "stamps": None,
                                        "chord": None, "ignore_result": False})()  # fmt: skip
        app.backend.store_result(theirs, 42, states.SUCCESS, request=request)
        (doc,) = await ours.get([theirs])
        assert doc is not None and doc["name"] == "proj.mul" and doc["args"] == [6, 7]
        assert (doc["worker"], doc["queue"], doc["retries"]) == ("celery@h", "celery", 0)
    finally:
        await ours.close()


async def test_table_names_and_schemas_through_the_app(
    raw: psycopg.AsyncConnection[tuple[Any, ...]],
) -> None:
    """``database_table_names`` and ``database_table_schemas`` place the tables as Celery
    does, and a Celery app with the same settings reads them."""
    async with fresh_schema() as task_schema, fresh_schema() as group_schema:
        settings = {
            "database_table_names": {"task": "job_results", "group": "job_groups"},
            "database_table_schemas": {"task": task_schema, "group": group_schema},
        }
        app = Celeriac("ours", broker="memory://sql-names", backend=URL, **settings)
        tid, gid = _tid(), _tid()
        backend = await app.aget_backend()
        try:
            await backend.store([(tid, make_meta(tid, states.SUCCESS, "named"))])
            await backend.save_group(gid, [tid])
        finally:
            await app.aclose()
        assert {"job_results", "celeriac_chord"} <= await _tables(raw, task_schema)
        assert await _tables(raw, group_schema) == {"job_groups"}
        peer = celery_app(task_schema, **settings)
        assert peer.AsyncResult(tid).get(timeout=5) == "named"
        assert [r.id for r in peer.GroupResult.restore(gid).results] == [tid]


async def test_joining_tables_celery_created(
    schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    """On tables Celery created, celeriac adds its columns (saying so) and both sides go on."""
    app = celery_app(schema)
    theirs = _tid()
    app.backend.store_result(theirs, "first", states.SUCCESS)
    ours = SQLBackend(URL, serializer=JSON, expires=3600, options={"schema": schema})
    with caplog.at_level(logging.WARNING, logger="celeriac.engines.postgres"):
        await ours.connect()
    try:
        assert "celeriac_expires_at" in caplog.text and "celeriac_extra" in caplog.text
        (doc,) = await ours.get([theirs])
        assert doc is not None and doc["result"] == "first"
        mine = _tid()
        await ours.store([(mine, make_meta(mine, states.SUCCESS, "second"))])
        assert app.AsyncResult(mine).get(timeout=5) == "second"
    finally:
        await ours.close()


async def _old_layout(raw: psycopg.AsyncConnection[tuple[Any, ...]], schema: str) -> dict[str, str]:
    """celeriac's tables before this layout, with a live result, an expired one and a group."""
    live, gone, gid = _tid(), _tid(), _tid()
    s = sql.Identifier(schema)
    await raw.execute(
        sql.SQL(
            "CREATE TABLE {}.celeriac_taskmeta (task_id varchar(255) PRIMARY KEY,"
            " status varchar(50) NOT NULL, meta bytea NOT NULL, stored_at float8 NOT NULL,"
            " expires_at float8)"
        ).format(s)
    )
    await raw.execute(
        sql.SQL(
            "CREATE TABLE {}.celeriac_groupmeta (group_id varchar(255) PRIMARY KEY,"
            " members text NOT NULL, expires_at float8)"
        ).format(s)
    )
    now = time.time()
    for tid, expires in ((live, now + 3600), (gone, now - 1)):
        meta = JSON.dumps(make_meta(tid, states.SUCCESS, f"old {tid[:4]}"))
        await raw.execute(
            sql.SQL("INSERT INTO {}.celeriac_taskmeta VALUES (%s, 'SUCCESS', %s, %s, %s)").format(
                s
            ),
            [tid, meta, now, expires],
        )
    await raw.execute(
        sql.SQL("INSERT INTO {}.celeriac_groupmeta VALUES (%s, %s, NULL)").format(s),
        [gid, json.dumps([live])],
    )
    return {"live": live, "gone": gone, "group": gid}


async def test_old_celeriac_tables_are_migrated_once(
    schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    ids = await _old_layout(raw, schema)
    first = SQLBackend(URL, serializer=JSON, expires=3600, options={"schema": schema})
    with caplog.at_level(logging.WARNING, logger="celeriac.engines.postgres"):
        await first.connect()
    second = SQLBackend(URL, serializer=JSON, expires=3600, options={"schema": schema})
    await second.connect()
    try:
        assert caplog.text.count("migrated 1 results and 1 saved groups") == 1
        live, gone = await second.get([ids["live"], ids["gone"]])
        assert live is not None and live["result"] == f"old {ids['live'][:4]}" and gone is None
        assert await second.restore_group(ids["group"]) == [ids["live"]]
        tables = await _tables(raw, schema)
        assert {"celeriac_taskmeta_migrated", "celeriac_groupmeta_migrated"} <= tables
        assert not {"celeriac_taskmeta", "celeriac_groupmeta"} & tables
        assert celery_app(schema).AsyncResult(ids["live"]).get(timeout=5).startswith("old ")
    finally:
        await first.close()
        await second.close()


async def test_pickled_rows_of_older_celery_need_pickle_accepted(
    ours: SQLBackend, schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    """Celery before 5.7 pickled results into the column: read only when pickle is accepted."""
    tid = _tid()
    await raw.execute(
        sql.SQL(
            "INSERT INTO {}.celery_taskmeta (id, task_id, status, result, date_done)"
            " VALUES (nextval(%s), %s, 'SUCCESS', %s, now())"
        ).format(sql.Identifier(schema)),
        [f'"{schema}".task_id_sequence', tid, pickle.dumps({"legacy": 1})],
    )
    with pytest.raises(ContentDisallowed, match="result_accept_content"):
        await ours.get([tid])
    codec = ResultCodec(JSON, accept=["json", "pickle"])
    reader = SQLBackend(URL, serializer=codec, expires=None, options={"schema": schema})
    try:
        (doc,) = await reader.get([tid])
        assert doc is not None and doc["result"] == {"legacy": 1}
    finally:
        await reader.close()


async def test_tables_created_at_setup_or_on_first_use(
    schema: str, raw: psycopg.AsyncConnection[tuple[Any, ...]]
) -> None:
    lazy = SQLBackend(
        URL, serializer=JSON, expires=None,
        options={"schema": schema, "database_create_tables_at_setup": False},
    )  # fmt: skip
    await lazy.connect()
    try:
        assert await _tables(raw, schema) == set()
        tid = _tid()
        await lazy.store([(tid, make_meta(tid, states.SUCCESS, 1))])
        assert "celery_taskmeta" in await _tables(raw, schema)
    finally:
        await lazy.close()


async def test_short_lived_sessions_open_a_connection_per_operation(schema: str) -> None:
    backend = SQLBackend(
        URL, serializer=get_serializer("json"), expires=None,
        options={"schema": schema, "database_short_lived_sessions": True,
                 "database_engine_options": {"pool_size": 3}},
    )  # fmt: skip
    await backend.connect()
    try:
        engine = backend._tables._engine
        assert engine is not None and type(engine.pool).__name__ == "NullPool"
        tid = _tid()
        await backend.store([(tid, make_meta(tid, states.SUCCESS, "once"))])
        assert (await backend.get([tid]))[0] is not None
    finally:
        await backend.close()
