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


async def test_api_queues_has_depths_consumers_and_rates_from_the_depth() -> None:
    app = Celery("q", broker=f"memory://queues-{uuid.uuid4().hex}", set_as_current=False)
    app.conf.task_default_queue = "jobs"
    web = create_app(app)
    rates = web.state.dashboard.feed.rates
    clock = [500.0]
    rates.clock, rates.started = (lambda: clock[0]), 0.0  # a whole window watched already
    async with client_of(web, auth=None) as client:
        first = (await client.get("/api/queues")).json()
        for n in range(10):
            await app.asend_task("q.job", (n,))
        clock[0] += 5.0  # five seconds later: ten more waiting, nothing taken, no events
        second = (await client.get("/api/queues")).json()
        page = await client.get("/queues")
    assert first == [
        {
            "name": "jobs",
            "messages": 0,
            "consumers": [],
            "rate_in": None,
            "rate_in_source": None,
            "rate_out": None,
            "rate_out_source": None,
        }
    ]
    assert second == [
        {
            "name": "jobs",
            "messages": 10,
            "consumers": [],
            "rate_in": 2.0,
            "rate_in_source": "depth",
            "rate_out": 0.0,
            "rate_out_source": "depth",
        }
    ]
    assert '<td class="rate-in">2.00 <small' in page.text and "source-depth" in page.text


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

        # The worker sends task-received (-E) and the client task-sent
        # (task_send_sent_event): both rates are counted from the events.
        for n in range(3):
            sent = await client_app.asend_task("webw.add", (n, n))
            assert await sent.aget(timeout=20) == 2 * n

        async def counted() -> Any:
            [row] = (await client.get("/api/queues")).json()
            return row if row["rate_out"] and row["rate_in"] else None

        row = await until(counted)
        assert row, worker.read_text()
        assert row["name"] == queue and row["consumers"] == [HOSTNAME]
        assert row["rate_out_source"] == row["rate_in_source"] == "events"
        assert row["rate_in"] > 0 and row["rate_out"] > 0
