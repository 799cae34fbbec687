"""Worker processes with results in PostgreSQL (``db+postgresql://``).

* SQLite broker + PostgreSQL results: seed 003's group and chain, and a chord, run by a
  real ``celeriac worker`` process; the results are read back from the tables.
* RabbitMQ broker + PostgreSQL results + ``worker -B``: beat, with nothing configured
  but the result backend, keeps its schedule in PostgreSQL (not in a local SQLite file)
  and sends seed 003's periodic ``check_cat``.

Each test uses its own PostgreSQL schema (given in the URL: ``?schema=...``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from celeriac import chain, chord, group
from celeriac.beat.stores import store_for_app
from celeriac.engines.postgres.schedules import SQLStore
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.integration import sql_worker_app as t
from tests.sql_fixtures import fresh_schema, postgres_or_skip, schema_url

amqp_vhost = amqp_fixtures.amqp_vhost
amqp_url = amqp_fixtures.amqp_url

ROOT = Path(__file__).resolve().parents[2]
WAIT = 30
StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_schema() as name:
        yield name


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[StartWorker]:
    """Start ``celeriac -A tests.integration.sql_worker_app worker`` in ``tmp_path``."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "celeriac", "-A", "tests.integration.sql_worker_app"]
        command += ["worker", "-l", "info", *args]
        log = (tmp_path / f"worker{len(started)}.log").open("wb")
        proc = subprocess.Popen(
            command,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.send_signal(signal.SIGTERM)
    for proc in started:
        try:
            assert proc.wait(30) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def _configure(env: dict[str, str]) -> None:
    """Point the client side of the app where the worker is."""
    t.app.conf.broker_url = env["SQL_BROKER"]
    t.app.conf.result_backend = env["SQL_BACKEND"]
    t.app.conf.task_default_queue = env["SQL_QUEUE"]
    t.app._router = None


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await asyncio.wait_for(asyncio.to_thread(fn), WAIT + 10)


async def _count(schema: str, table: str, where: str = "") -> int:
    conn = await postgres_or_skip()
    try:
        query = sql.SQL("SELECT count(*) FROM {}.{} " + where)
        cur = await conn.execute(query.format(sql.Identifier(schema), sql.Identifier(table)))
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])
    finally:
        await conn.close()


def seed_group() -> Any:
    """Seed 003's group, as written."""
    task1 = t.buy_milk.s(7)
    task2 = t.buy_bread.s(5)
    return group(task1, task2).apply_async().get(timeout=WAIT)


def seed_chain() -> Any:
    """Seed 003's chain, as written."""
    task_chain = chain(t.fetch_user_name.s(1) | t.greeting_user.s())
    return task_chain.apply_async().get(timeout=WAIT)


def a_chord() -> Any:
    return chord([t.add.s(i, i) for i in range(6)])(t.xsum.s()).get(timeout=WAIT)


async def test_group_chain_chord_with_postgresql_results(
    schema: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    env = {
        "SQL_BROKER": f"sqlite:///{tmp_path / 'broker.sqlite'}",
        "SQL_BACKEND": schema_url(schema, "db+"),
        "SQL_QUEUE": "celery",
    }
    _configure(env)
    try:
        start_worker(env, "-P", "prefork", "-c", "2")  # forked children, as Celery's default
        assert await _in_thread(seed_group) == [7, 5]
        assert await _in_thread(seed_chain) == "Здравствуй, Пётр 1Первый!"
        assert await _in_thread(a_chord) == 30
    finally:
        await asyncio.to_thread(t.app.close)
    # 2 + 2 + 6 header tasks + the chord body: all stored in PostgreSQL.
    assert await _count(schema, "celery_taskmeta", "WHERE status = 'SUCCESS'") >= 11
    assert await _count(schema, "celeriac_chord", "WHERE done") == 1
    assert await _count(schema, "celeriac_chord_part") == 0


@pytest.mark.amqp
async def test_amqp_broker_beat_keeps_its_schedule_in_postgresql(
    schema: str, amqp_url: str, start_worker: StartWorker, tmp_path: Path
) -> None:
    out = tmp_path / "check_cat.txt"
    env = {
        "SQL_BROKER": amqp_url,
        "SQL_BACKEND": schema_url(schema, "db+"),
        "SQL_QUEUE": f"sqltest-{uuid.uuid4().hex[:10]}",
        "SQL_CHECK_CAT_OUT": str(out),
        "SQL_CHECK_CAT_EVERY": "0.5",
    }
    _configure(env)
    store = store_for_app(t.app)
    assert isinstance(store, SQLStore)  # derived from the db+postgresql result backend
    try:
        proc = start_worker(env, "-B", "-P", "threads", "-c", "2")
        deadline = time.monotonic() + WAIT
        while not out.exists() or len(out.read_text().splitlines()) < 3:
            assert proc.poll() is None, "the worker exited"
            assert time.monotonic() < deadline, "check_cat did not run three times"
            await asyncio.sleep(0.1)
        assert await _in_thread(seed_group) == [7, 5]
        runs = await store.load()
        assert any(name.endswith("check_cat()@every:0.5") for name in runs), runs
        assert await store.lease_holder() is not None
    finally:
        await store.close()
        await asyncio.to_thread(t.app.close)
    assert set(out.read_text().splitlines()) <= {"Кот ничего не сломал.", "Кот что-то сломал..."}
    assert not (tmp_path / "celeriac.sqlite").exists()  # no fallback to a local file
    assert await _count(schema, "celeriac_beat_state") >= 1
