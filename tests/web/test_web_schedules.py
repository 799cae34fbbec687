"""Schedules in the dashboard: the app's periodic tasks with their last and next runs and
the beat holding the lease, read from the store every beat shares; with no beat, and with
a real ``celeriac beat`` on Redis and on RabbitMQ (its store then on the Redis backend)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.web import create_app
from tests import services
from tests.web.conftest import Servers
from tests.web.test_web_worker import AUTH, client_of, until

pytestmark = [pytest.mark.timeout(90)]


async def test_without_a_beat_the_entries_show_and_no_holder() -> None:
    app = Celery("sched", broker=f"memory://sched-{uuid.uuid4().hex}", set_as_current=False)
    app.conf.beat_schedule = {"tick": {"task": "sched.tick", "schedule": 30.0, "args": (1,)}}
    web = create_app(app)
    async with client_of(web, auth=None) as client:
        found = (await client.get("/api/schedules")).json()
        page = await client.get("/schedules")
    assert found["holder"] is None
    (entry,) = found["entries"]
    assert (entry["name"], entry["task"], entry["args"]) == ("tick", "sched.tick", "(1,)")
    assert entry["last_run"] is None and entry["next_run"] >= time.time() - 1
    assert page.status_code == 200 and "No beat holds the lease" in page.text


@pytest.fixture
def beat(servers: Servers, tmp_path: Path, client_app: Celery) -> Iterator[Path]:
    """``celeriac beat`` on the tests' broker with one entry a second; its log."""
    log = tmp_path / "beat.log"
    env = {"WEB_BEAT": "1", "CELERIAC_BROKER_URL": servers.broker,
           "CELERIAC_RESULT_BACKEND": servers.backend,
           "TEST_KEYPREFIX": servers.prefix}  # fmt: skip
    client_app.conf.beat_schedule = {
        "add-every-second": {"task": "webw.add", "schedule": 1.0, "args": (1, 1)},
    }
    try:
        with services.running_celeriac(["-A", "tests.web.web_app", "beat", "-l", "info"], log, env):
            yield log
    finally:
        client_app.conf.beat_schedule = {}


@pytest.mark.redis
@pytest.mark.amqp
async def test_a_running_beat_holds_the_lease_and_records_its_runs(
    client_app: Celery, beat: Path
) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with client_of(web) as client:

        async def sent() -> Any:
            found = (await client.get("/api/schedules")).json()
            entry = found["entries"][0] if found.get("entries") else {}
            return found if found.get("holder") and entry.get("last_run") else None

        found = await until(sent, seconds=30)
        assert found, beat.read_text()
        (entry,) = found["entries"]
        assert entry["name"] == "add-every-second" and entry["task"] == "webw.add"
        assert time.time() - 60 < entry["last_run"] <= entry["next_run"]
        page = await client.get("/schedules")
        assert found["holder"] in page.text and "holds the lease" in page.text
