"""Workflows in the dashboard: a chain into a group run by a real worker (Redis, RabbitMQ)
shows as a tree by parent: the first task, and under it the group's two members."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, chain, group
from celeriac.web import create_app
from tests.web.test_web_worker import AUTH, client_of, until

pytestmark = [pytest.mark.redis, pytest.mark.amqp, pytest.mark.timeout(90)]


async def test_a_chain_into_a_group_is_drawn_as_a_tree(client_app: Celery, worker: Path) -> None:
    add = client_app.signature("webw.add")
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:
        await asyncio.sleep(0.5)  # the feed is subscribed before the first task's events
        flow = chain(add.clone((1, 1)), group(add.clone((10,)), add.clone((20,))))
        result = await asyncio.to_thread(flow.apply_async)
        assert await asyncio.to_thread(result.get, timeout=30) == [12, 22]
        first = result.parent.id

        async def drawn() -> Any:
            answer = await client.get(f"/api/workflow/{first}")
            if answer.status_code != 200:
                return None
            trees = answer.json()["trees"]
            done = trees and len(trees[0]["children"]) == 2
            states = {c["state"] for c in trees[0]["children"]} if done else set()
            return trees if states == {"SUCCESS"} else None

        trees = await until(drawn)
        assert trees, worker.read_text()
        assert [t["uuid"] for t in trees] == [first] and trees[0]["state"] == "SUCCESS"
        assert {c["uuid"] for c in trees[0]["children"]} == {r.id for r in result.results}
        page = await client.get(f"/workflow/{first}")
        assert page.status_code == 200 and page.text.count('class="state state-SUCCESS"') == 3
        detail = await client.get(f"/task/{result.results[0].id}")
        assert f"/workflow/{first}" in detail.text
        missing = await client.get("/api/workflow/no-such-root")
        assert missing.status_code == 404
