"""Queues in the dashboard: the depth of each queue and who consumes it, on the API in
Flower's shape and on the page; from the workers' answers (a real worker on Redis and on
RabbitMQ) or, when none answers, from the app's configured queues."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.web import create_app
from tests.web.conftest import HOSTNAME
from tests.web.test_web_worker import AUTH, client_of, until

pytestmark = [pytest.mark.timeout(90)]


async def test_without_workers_the_configured_queues_are_counted() -> None:
    app = Celery("q", broker=f"memory://queues-{uuid.uuid4().hex}", set_as_current=False)
    app.conf.task_default_queue = "jobs"
    for n in range(3):
        await app.asend_task("q.job", (n,))
    web = create_app(app)
    async with client_of(web, auth=None) as client:
        lengths = (await client.get("/api/queues/length")).json()
        page = await client.get("/queues")
    assert lengths == {"active_queues": [{"name": "jobs", "messages": 3}]}
    assert page.status_code == 200 and "no worker answered" in page.text


@pytest.mark.redis
@pytest.mark.amqp
async def test_a_real_workers_queue_is_listed_with_its_consumer(
    client_app: Celery, worker: Path
) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    queue = client_app.conf["task_default_queue"]
    async with web.router.lifespan_context(web), client_of(web) as client:

        async def consumed() -> Any:
            page = await client.get("/queues")
            return page.text if HOSTNAME in page.text else None

        text = await until(consumed)
        assert text, worker.read_text()
        assert f'data-queue="{queue}"' in text
        lengths = (await client.get("/api/queues/length")).json()["active_queues"]
        assert [row["name"] for row in lengths] == [queue]
        assert isinstance(lengths[0]["messages"], int) and lengths[0]["messages"] >= 0
