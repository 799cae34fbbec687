"""The dashboard against a real worker on Redis and on RabbitMQ: submit over the API, watch
the task in the task list and info (from the worker's events), read its result."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from celeriac import Celery
from celeriac.web import create_app
from tests.web.conftest import HOSTNAME

pytestmark = [pytest.mark.redis, pytest.mark.amqp, pytest.mark.timeout(90)]

AUTH = "ops:pw"


async def until(check: Callable[[], Awaitable[Any]], seconds: float = 30.0) -> Any:
    """``check()``'s first truthy answer, polled until ``seconds`` pass (then the last one)."""
    deadline = time.monotonic() + seconds
    while True:
        answer = await check()
        if answer or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.2)


def client_of(web: Any, auth: str | None = AUTH) -> httpx.AsyncClient:
    headers = {}
    if auth is not None:
        headers["authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    transport = httpx.ASGITransport(app=web, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers)


async def test_submit_watch_and_read_a_result(client_app: Celery, worker: Path) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:
        workers = await until(lambda: _json(client.get("/api/workers", params={"status": "true"})))
        assert workers.get(HOSTNAME) is True, worker.read_text()

        posted = await client.post("/api/task/async-apply/webw.add", json={"args": [20, 22]})
        assert posted.status_code == 200, posted.text
        task_id = posted.json()["task-id"]

        async def finished() -> Any:
            info = await client.get(f"/api/task/info/{task_id}")
            return (
                info.json()
                if info.status_code == 200 and info.json()["state"] == "SUCCESS"
                else None
            )

        info = await until(finished)
        assert info, worker.read_text()
        assert info["name"] == "webw.add" and info["worker"] == HOSTNAME
        assert info["args"] == "[20, 22]" and info["result"] == "42"
        assert info["received"] and info["started"] and info["succeeded"]

        listed = (await client.get("/api/tasks", params={"taskname": "webw.add"})).json()
        assert task_id in listed and listed[task_id]["state"] == "SUCCESS"

        result = (await client.get(f"/api/task/result/{task_id}", params={"timeout": 10})).json()
        assert result == {"task-id": task_id, "state": "SUCCESS", "result": 42}


async def test_a_failure_shows_its_traceback(client_app: Celery, worker: Path) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:
        posted = await client.post("/api/task/send-task/webw.fail", json={"args": ["kaput"]})
        task_id = posted.json()["task-id"]
        result = (await client.get(f"/api/task/result/{task_id}", params={"timeout": 20})).json()
        assert result["state"] == "FAILURE", worker.read_text()
        assert "kaput" in result["result"] and "ValueError: kaput" in result["traceback"]

        async def failed() -> Any:
            page = await client.get("/tasks", params={"state": "FAILURE"})
            return task_id in page.text

        assert await until(failed)
        detail = await client.get(f"/task/{task_id}")
        assert "ValueError: kaput" in detail.text


async def test_without_credentials_every_request_is_401(client_app: Celery) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with client_of(web, auth=None) as anonymous:
        posted = await anonymous.post("/api/task/async-apply/webw.add", json={"args": [1, 2]})
        listed = await anonymous.get("/api/tasks")
    assert posted.status_code == 401 and listed.status_code == 401


async def test_bad_input_names_the_problem(client_app: Celery) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with client_of(web) as client:
        unknown = await client.post("/api/task/async-apply/webw.nope", json={})
        not_json = await client.post("/api/task/async-apply/webw.add", content=b"args=1")
    assert unknown.status_code == 404 and "webw.nope" in unknown.json()["error"]
    assert not_json.status_code == 400 and "not JSON" in not_json.json()["error"]


async def _json(response: Awaitable[httpx.Response]) -> Any:
    answer = await response
    return answer.json() if answer.status_code == 200 else {}
