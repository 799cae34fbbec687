"""``/api/workers`` with what remote control tells of each worker, as Flower's inspector
adds it: the registered tasks, queues, stats and settings of every worker, and the tasks
one worker runs when it is named (their secret arguments masked), on Redis and RabbitMQ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.web import create_app
from celeriac.web.masking import MASK, Masker
from tests.web.conftest import HOSTNAME
from tests.web.test_web_worker import AUTH, client_of, until

pytestmark = [pytest.mark.timeout(90)]


@pytest.mark.redis
@pytest.mark.amqp
async def test_workers_carry_their_inspect_replies(client_app: Celery, worker: Path) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:

        async def inspected() -> Any:  # asked for when the dashboard started
            listed = (await client.get("/api/workers")).json()
            return listed.get(HOSTNAME) if "registered" in listed.get(HOSTNAME, {}) else None

        info = await until(inspected)
        assert info, worker.read_text()
        # (Named with its attributes once a test before set one: "webw.add [rate_limit=..]".)
        assert "webw.add" in [name.split(" [")[0] for name in info["registered"]]
        assert "celery" in [queue["name"] for queue in info["active_queues"]]
        assert info["stats"]["pool"]["max-concurrency"] >= 1
        assert isinstance(info["conf"], dict) and info["status"] is True
        assert "active" not in info  # task lists only when one worker is asked for

        running = client_app.send_task("webw.sleep", kwargs={"seconds": 3, "api_key": "xyz"})

        async def active() -> Any:
            answer = await client.get(
                "/api/workers", params={"workername": HOSTNAME, "refresh": "true"}
            )
            assert answer.status_code == 200, answer.text
            tasks = answer.json()[HOSTNAME]["active"]
            return tasks if any(task["id"] == running.id for task in tasks) else None

        tasks = await until(active)
        assert tasks, worker.read_text()
        mine = next(task for task in tasks if task["id"] == running.id)
        assert mine["kwargs"] == {"seconds": 3, "api_key": MASK}
        assert running.get(timeout=20) == "woke"
        unknown = await client.get("/api/workers", params={"workername": "nobody@nowhere"})
        assert unknown.status_code == 404


def test_the_masker_masks_decoded_arguments_without_touching_them() -> None:
    given = {"user": "ann", "db_password": "pw", "nested": [{"token": "t", "n": 1}]}
    masked = Masker().value(given)
    assert masked == {"user": "ann", "db_password": MASK, "nested": [{"token": MASK, "n": 1}]}
    assert given["db_password"] == "pw"
    assert Masker("").value(given) is given
