"""The dashboard's task history survives a restart: tasks written to its SQLite file are
there again, with their traceback and counts, in a dashboard started later on the same file;
a task older than what memory holds is still found by id; retention drops old rows."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.events.state import State
from celeriac.web import create_app
from celeriac.web.feed import Feed
from celeriac.web.history import History
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
