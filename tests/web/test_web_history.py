"""The dashboard's task history survives a restart: tasks written to its SQLite file are
there again, with their traceback and counts, in a dashboard started later on the same file;
a task older than what memory holds is still found by id; retention drops old rows."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.events.state import State
from celeriac.web import create_app
from celeriac.web.feed import Feed
from celeriac.web.history import TABLE, History, open_history
from celeriac.web.history_sql import SQLHistory
from celeriac.web.history_sqlite import SQLiteHistory
from celeriac.web.records import TaskQuery
from celeriac.web.tally import Tally
from tests.web.conftest import HOSTNAME
from tests.web.test_web_worker import AUTH, client_of, until

pytestmark = [pytest.mark.timeout(90)]


def _events(uuid: str, clock: float) -> list[dict[str, Any]]:
    """A task received, started and failed on worker w1, as its events say it."""
    common = {"uuid": uuid, "hostname": "w1@host"}
    return [
        {**common, "type": "task-received", "timestamp": clock, "name": "t.fail",
         "args": "('x',)", "kwargs": "{}", "retries": 0},
        {**common, "type": "task-started", "timestamp": clock + 1},
        {**common, "type": "task-failed", "timestamp": clock + 2, "exception": "ValueError('x')",
         "traceback": "Traceback...\nValueError: x"},
    ]  # fmt: skip


async def test_flushed_tasks_load_back_with_their_counts(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite")
    feed = Feed(Celery("h", broker="memory://"), history=history)
    for n in range(3):
        for event in _events(f"id-{n}", 1000.0 + n):
            feed.take(event)
    assert await history.flush(feed.state) == 3
    assert await history.flush(feed.state) == 0  # nothing changed since
    await history.close()

    state, tally = State(max_tasks_in_memory=2), Tally()
    assert await History(tmp_path / "history.sqlite").load(state, tally) == 2
    assert list(state.tasks) == ["id-1", "id-2"]  # the newest, oldest first
    task = state.tasks["id-2"]
    assert (task.name, task.state, task.args) == ("t.fail", "FAILURE", "('x',)")
    assert task.worker is not None and task.worker.hostname == "w1@host"
    assert task.traceback == "Traceback...\nValueError: x"
    assert [s for s, _ in task.timeline] == ["RECEIVED", "STARTED", "FAILURE"]
    assert tally.by_state() == {"FAILURE": 2}
    assert state.task_types() == ["t.fail"]
    assert "w1@host" not in state.workers  # a stored name is not a live worker


async def test_retention_drops_the_oldest_rows(tmp_path: Path) -> None:
    history = History(tmp_path / "history.sqlite", max_rows=2)
    feed = Feed(Celery("h", broker="memory://"), history=history)
    for n in range(4):
        feed.take(_events(f"id-{n}", time.time() - 100 + n)[0])
    await history.flush(feed.state)
    assert await history.prune() == 2
    assert await history.find("id-0") is None and await history.find("id-3") is not None
    aged = History(tmp_path / "history.sqlite", max_age=50)
    assert await aged.prune() == 2  # their last events were 97 and 98 s ago
    assert await aged.find("id-3") is None
    await history.close()
    await aged.close()


@pytest.mark.redis
@pytest.mark.amqp
async def test_a_restarted_dashboard_shows_yesterdays_failure(
    client_app: Celery, worker: Path, tmp_path: Path
) -> None:
    kept = tmp_path / "dashboard.sqlite"
    first = create_app(client_app, basic_auth=AUTH, history=kept)
    async with first.router.lifespan_context(first), client_of(first) as client:
        posted = await client.post("/api/task/send-task/webw.fail", json={"args": ["gone"]})
        failed_id = posted.json()["task-id"]
        posted = await client.post("/api/task/async-apply/webw.add", json={"args": [1, 2]})
        added_id = posted.json()["task-id"]

        async def both_done() -> bool:
            listed = (await client.get("/api/tasks")).json()
            states = {listed.get(i, {}).get("state") for i in (failed_id, added_id)}
            return states == {"FAILURE", "SUCCESS"}

        assert await until(both_done), worker.read_text()
    # The lifespan ended: the last changes were flushed and the file closed.

    second = create_app(client_app, basic_auth=AUTH, history=kept, max_tasks=1)
    async with second.router.lifespan_context(second), client_of(second) as client:

        async def loaded() -> Any:
            listed = (await client.get("/api/tasks")).json()
            return listed or None

        listed = await until(loaded, seconds=10)
        assert len(listed) == 1  # memory holds one: the most recently updated
        for task_id in (failed_id, added_id):  # either way, both are found by id
            info = await client.get(f"/api/task/info/{task_id}")
            assert info.status_code == 200, info.text
        failure = (await client.get(f"/api/task/info/{failed_id}")).json()
        assert failure["state"] == "FAILURE" and failure["worker"] == HOSTNAME
        assert "ValueError" in failure["traceback"] and "gone" in failure["traceback"]
        # The charts were refilled from the file, not from memory (which holds one task).
        points = (await client.get("/api/series")).json()["points"]
        finished = [(p["succeeded"], p["failed"]) for p in points if p["succeeded"] or p["failed"]]
        assert [sum(column) for column in zip(*finished, strict=True)] == [1, 1], points
        page = await client.get(f"/task/{failed_id}")
        assert page.status_code == 200 and "ValueError" in page.text
        unknown = await client.get("/api/task/info/no-such-task")
        assert unknown.status_code == 404


async def test_the_healthcheck_needs_no_credentials() -> None:
    web = create_app(Celery("h", broker="memory://"), basic_auth=AUTH)
    async with client_of(web, auth=None) as anonymous:
        health = await anonymous.get("/healthcheck")
        other = await anonymous.get("/api/workers")
    assert (health.status_code, health.text) == (200, "OK")
    assert other.status_code == 401


# --- the history in a SQL result database, and the filters over all of it -----------------
YESTERDAY = (time.time() - 86400) // 60 * 60  # on a minute: the time filters take minutes


def _task(uuid: str, clock: float, name: str, end: str, worker: str = "w1@host") -> list[Any]:
    """A task's events: received, started and then ``end`` (None: still running)."""
    common = {"uuid": uuid, "hostname": worker}
    events: list[dict[str, Any]] = [
        {**common, "type": "task-received", "timestamp": clock, "name": name,
         "args": f"('{uuid}-arg',)", "kwargs": "{'pass': 'x'}"},
        {**common, "type": "task-started", "timestamp": clock + 1},
    ]  # fmt: skip
    if end == "task-failed":
        events.append({**common, "type": end, "timestamp": clock + 2, "exception": "KeyError()"})
    elif end == "task-succeeded":
        events.append({**common, "type": end, "timestamp": clock + 2, "result": "'done'"})
    return events


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A SQL result backend URL: a SQLite file, or PostgreSQL in a schema of its own."""
    if request.param == "sqlite":
        yield f"db+sqlite:///{tmp_path / 'results.sqlite'}"
        return
    from tests.sql_fixtures import fresh_schema, schema_url  # noqa: PLC0415

    async with fresh_schema() as schema:
        yield schema_url(schema, "db+")


def _history_of(url: str, **options: Any) -> History:
    app = Celery("h", broker="memory://", backend=url)
    return open_history(app, **options)


async def test_the_history_goes_to_the_sql_result_database(store_url: str) -> None:
    history = _history_of(store_url)
    if store_url.startswith("db+sqlite"):
        assert isinstance(history.store, SQLiteHistory)
        assert history.store.table == TABLE and str(history.path).endswith("results.sqlite")
    else:
        assert isinstance(history.store, SQLHistory)
        assert history.store.settings.schema in store_url
    feed = Feed(Celery("h", broker="memory://"), history=history)
    for event in _task("old-fail", YESTERDAY, "t.fail", "task-failed"):
        feed.take(event)
    assert await history.flush(feed.state) == 1
    await history.close()

    # "Restart": a new dashboard on the same database finds yesterday's failure.
    again = _history_of(store_url)
    state, tally = State(), Tally()
    assert await again.load(state, tally) == 1
    assert state.tasks["old-fail"].state == "FAILURE"
    assert state.tasks["old-fail"].exception == "KeyError()"
    found = await again.select(TaskQuery(state="FAILURE"), cap=100)
    assert [record["uuid"] for record in found] == ["old-fail"]
    await again.close()


async def test_the_history_file_is_picked_when_named_or_without_a_sql_database(
    tmp_path: Path,
) -> None:
    named = _history_of("db+sqlite:///ignored.sqlite", path=tmp_path / "mine.sqlite")
    assert named.path == tmp_path / "mine.sqlite"
    assert isinstance(named.store, SQLiteHistory) and named.store.table == "dashboard_tasks"
    redis = _history_of("redis://127.0.0.1:6379/0", default=tmp_path / "default.sqlite")
    assert redis.path == tmp_path / "default.sqlite"
    none = open_history(Celery("h", broker="memory://"), default=tmp_path / "d.sqlite")
    assert none.path == tmp_path / "d.sqlite"


async def test_filters_cover_the_whole_history_merged_with_unflushed_changes(
    store_url: str,
) -> None:
    history = _history_of(store_url)
    app = Celery("h", broker="memory://")
    web = create_app(app, basic_auth=AUTH, history=history, max_tasks=2)
    feed = web.state.dashboard.feed
    plan = [("a", "t.add", "task-succeeded", "w1@host"), ("b", "t.fail", "task-failed", "w2@host"),
            ("c", "t.add", "task-failed", "w1@host"), ("d", "t.add", "", "w2@host"),
            ("e", "t.add", "task-succeeded", "w1@host")]  # fmt: skip
    for n, (uuid, name, end, worker) in enumerate(plan):
        for event in _task(uuid, YESTERDAY + 120 * n, name, end, worker):
            feed.take(event)
    assert await history.flush(feed.state) == 5  # memory holds two, all five were written
    assert list(feed.state.tasks) == ["d", "e"]
    # Unflushed: d fails now; memory is newer than its stored row (STARTED).
    feed.take({"uuid": "d", "hostname": "w2@host", "type": "task-failed",
               "timestamp": YESTERDAY + 1000, "exception": "ValueError()"})  # fmt: skip

    async def listed(**params: Any) -> list[str]:
        answer = await client.get("/api/tasks", params={"limit": 10, **params})
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    async with client_of(web) as client:
        assert await listed(state="FAILURE") == ["d", "c", "b"]  # newest first
        assert await listed(state="STARTED") == []  # d's stored row is not the news
        assert await listed(taskname="t.add", limit=2) == ["d", "e"]
        assert await listed(taskname="t.add", limit=2, offset=2) == ["c", "a"]
        assert await listed(workername="w2@host") == ["d", "b"]
        assert await listed(search="C-ARG") == ["c"]  # in args, any case
        assert await listed(search="keyerror") == ["c", "b"]  # in the exception
        assert await listed(search="100%") == []  # LIKE's wildcards are plain text
        by_name = await listed(state="FAILURE", sort_by="-name")
        assert by_name[0] == "b"  # t.fail after t.add

        def minute(offset: float) -> str:
            return dt.datetime.fromtimestamp(YESTERDAY + offset).strftime("%Y-%m-%d %H:%M")

        assert await listed(received_start=minute(60)) == ["d", "e", "c", "b"]
        assert await listed(received_start=minute(60), received_end=minute(300)) == ["c", "b"]
        assert await listed(started_end=minute(180)) == ["b", "a"]
        assert await listed(started_start=minute(420)) == ["e"]
        record = (await client.get("/api/tasks", params={"search": "c-arg"})).json()["c"]
        assert record["worker"] == "w1@host" and record["exception"] == "KeyError()"
        assert "timeline" not in record  # Flower's shape
        page = await client.get("/tasks", params={"state": "FAILURE"})
        assert page.status_code == 200
        assert all(f'data-id="{uuid}"' in page.text for uuid in "bcd")
        unfiltered = await listed()  # no filter: memory, as before
        assert unfiltered == ["d", "e"]
        capped = (await client.get("/api/tasks", params={"state": "FAILURE"})).json()
        assert list(capped) == ["d", "c"]  # no limit: at most --max-tasks
    await feed.stop()
    await history.close()


async def test_a_task_memory_dropped_before_the_flush_is_still_written(tmp_path: Path) -> None:
    history = History(tmp_path / "h.sqlite")
    feed = Feed(Celery("h", broker="memory://"), history=history, max_tasks=1)
    for uuid in ("x", "y", "z"):
        for event in _task(uuid, YESTERDAY, "t.add", "task-succeeded"):
            feed.take(event)
    assert list(feed.state.tasks) == ["z"]
    assert await history.flush(feed.state) == 3
    stored = await history.find("x")
    assert stored is not None and stored["state"] == "SUCCESS"
    await history.close()


async def test_a_file_written_before_the_filter_columns_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    record = {"uuid": "old", "name": "t.old", "state": "FAILURE", "args": "('Needle',)",
              "received": YESTERDAY, "started": YESTERDAY + 1,
              "timestamp": YESTERDAY + 2}  # fmt: skip
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "CREATE TABLE dashboard_tasks (uuid TEXT PRIMARY KEY, name TEXT, state TEXT,"
            " worker TEXT, updated REAL NOT NULL, record TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO dashboard_tasks VALUES ('old', 't.old', 'FAILURE', NULL, ?, ?)",
            (YESTERDAY + 2, json.dumps(record)),
        )
    history = History(path)
    found = await history.select(TaskQuery(search="needle"), cap=10)
    assert [r["uuid"] for r in found] == ["old"]
    start = YESTERDAY - 60
    assert len(await history.select(TaskQuery(received_start=start), cap=10)) == 1
    assert await history.select(TaskQuery(started_start=YESTERDAY + 60), cap=10) == []
    await history.close()


async def test_retention_by_count_keeps_the_newest(store_url: str) -> None:
    history = _history_of(store_url, max_rows=3)
    feed = Feed(Celery("h", broker="memory://"), history=history)
    for n in range(5):
        for event in _task(f"id-{n}", time.time() - 100 + n, "t.add", "task-succeeded"):
            feed.take(event)
    await history.flush(feed.state)
    assert await history.prune() == 2
    kept = await history.select(TaskQuery(taskname="t.add"), cap=10)
    assert [r["uuid"] for r in kept] == ["id-4", "id-3", "id-2"]
    await history.close()


async def test_a_restarted_dashboard_finds_yesterdays_failures_in_the_result_database(
    store_url: str,
) -> None:
    app = Celery("h", broker="memory://", backend=store_url)
    first = create_app(app, basic_auth=AUTH, history=open_history(app), max_tasks=1)
    async with first.router.lifespan_context(first):
        feed = first.state.dashboard.feed
        for n, uuid in enumerate(("fail-1", "ok", "fail-2")):
            end = "task-succeeded" if uuid == "ok" else "task-failed"
            for event in _task(uuid, YESTERDAY + n, "t.job", end):
                feed.take(event)
    # The lifespan ended: the last changes were flushed. A new dashboard on the database:
    second = create_app(app, basic_auth=AUTH, history=open_history(app), max_tasks=1)
    async with second.router.lifespan_context(second), client_of(second) as client:
        params = {"state": "FAILURE", "limit": 10}
        listed = (await client.get("/api/tasks", params=params)).json()
        assert list(listed) == ["fail-2", "fail-1"]  # memory holds one; the list finds both
        assert listed["fail-1"]["exception"] == "KeyError()"
        info = await client.get("/api/task/info/fail-1")
        assert info.status_code == 200 and info.json()["state"] == "FAILURE"

        async def counted() -> str | None:  # once the history is read: its counts
            page = (await client.get("/")).text
            return page if "all 3 tasks in the history" in page else None

        page = await until(counted, seconds=10)
        assert page is not None, "the overview never counted the history's three tasks"
        assert '<b data-state="FAILURE">2</b>' in page and '<b data-state="SUCCESS">1</b>' in page
    app.close()


async def test_the_totals_count_the_whole_history_through_flushes_retention_and_a_restart(
    store_url: str,
) -> None:
    history = _history_of(store_url, max_rows=4)
    feed = Feed(Celery("h", broker="memory://"), history=history, max_tasks=2)
    now = time.time()
    for n in range(5):
        for event in _task(f"id-{n}", now - 100 + n, "t.add", "still running"):
            feed.take(event)
    await history.flush(feed.state)
    assert feed.totals.by_state() == {"STARTED": 5}
    assert feed.tally.by_state() == {"STARTED": 2}  # memory holds the newest two
    # id-0 ends long after memory dropped it: its row is completed, not counted again.
    end = {"uuid": "id-0", "hostname": "w1@host", "type": "task-succeeded",
           "timestamp": now - 10, "result": "1", "runtime": 2.5}  # fmt: skip
    feed.take(end)
    await history.flush(feed.state)
    assert feed.totals.by_state() == {"STARTED": 4, "SUCCESS": 1}
    by_name = {
        row.name: (row.total, row.succeeded, row.mean_runtime) for row in feed.totals.by_name()
    }
    assert by_name == {"t.add": (5, 1, 2.5)}
    stored = await history.find("id-0")
    assert stored is not None
    assert (stored["name"], stored["state"], stored["args"]) == (
        "t.add",
        "SUCCESS",
        "('id-0-arg',)",
    )
    assert stored["received"] == now - 100 and stored["worker"] == "w1@host"
    assert await history.prune() == 1  # the newest four by their last event: id-1 goes
    assert feed.totals.by_state() == {"STARTED": 3, "SUCCESS": 1}
    await history.close()

    again = _history_of(store_url)  # a restart: the totals are read back from the store
    await again.load(State(max_tasks_in_memory=1), Tally())
    assert again.totals.by_state() == {"STARTED": 3, "SUCCESS": 1}
    assert [(row.name, row.total, row.mean_runtime) for row in again.totals.by_name()] == [
        ("t.add", 4, 2.5)
    ]
    await again.close()


class _Failing:
    """A store whose writes fail (a database that went away)."""

    async def write(self, rows: list[Any]) -> None:
        raise OSError("gone")


async def test_a_failed_flush_keeps_the_changes_for_the_next_within_a_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("celeriac.web.history.MAX_PENDING", 2)
    history = History(_Failing())  # type: ignore[arg-type]
    feed = Feed(Celery("h", broker="memory://"), history=history)
    for uuid in ("x", "y", "z"):
        feed.take(_task(uuid, YESTERDAY, "t.add", "task-succeeded")[0])
    with pytest.raises(OSError, match="gone"):
        await history.flush(feed.state)
    assert list(history.pending()) == ["y", "z"]  # kept for the next flush, the newest two


class _Slow:
    """A store whose writes wait until let go (a writer that is behind the events)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.batches: list[int] = []

    async def write(self, rows: list[Any]) -> dict[str, Any]:
        await self.go.wait()
        self.batches.append(len(rows))
        return {}

    async def close(self) -> None:
        pass


async def test_a_feed_ahead_of_the_history_writer_waits_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("celeriac.web.history.HIGH_WATER", 5)
    store = _Slow()
    history = History(store, interval=3600)  # type: ignore[arg-type]  # woken, or never
    feed = Feed(Celery("h", broker="memory://"), history=history)
    writer = asyncio.create_task(history.run(feed.state))
    await asyncio.sleep(0)
    for n in range(5):
        feed.take(_task(f"a{n}", YESTERDAY, "t.add", "task-succeeded")[0])
    await asyncio.wait_for(feed.keep_pace(), 5)  # the writer took them at once, not in an hour
    for n in range(5):
        feed.take(_task(f"b{n}", YESTERDAY, "t.add", "task-succeeded")[0])
    pace = asyncio.create_task(feed.keep_pace())
    await asyncio.sleep(0.1)
    assert not pace.done()  # five being written and five more: the feed waits
    assert len(history.pending()) == 10
    store.go.set()
    await asyncio.wait_for(pace, 5)
    writer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await writer
    assert store.batches == [5, 5]
