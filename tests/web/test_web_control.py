"""Flower's control endpoints against real workers (prefork, threads) on Redis and RabbitMQ:
the pool grows and shrinks, a queue is consumed and dropped, a rate limit and time limits
are set, a running task is terminated; unknown workers and tasks get 404, a refused
command 403 with the worker's reason."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from celeriac import Celery
from celeriac.web import create_app
from tests import services
from tests.web.conftest import HOSTNAME, Servers
from tests.web.test_web_worker import AUTH, client_of, until

PREFORK = "webp@test"
"""A prefork worker of its own: only a prefork pool grows and shrinks, and kills a task."""
PREFORK_QUEUE = f"prefork-{uuid.uuid4().hex[:8]}"
"""Its queue, so that the task to terminate goes to it, not to the threads worker."""

pytestmark = [pytest.mark.redis, pytest.mark.amqp, pytest.mark.timeout(90)]


@pytest.fixture
def prefork(servers: Servers, tmp_path: Path) -> Iterator[Path]:
    """A prefork worker (``-c 1``) on the tests' broker; its log."""
    log = tmp_path / "prefork.log"
    env = {"CELERIAC_BROKER_URL": servers.broker, "CELERIAC_RESULT_BACKEND": servers.backend,
           "TEST_KEYPREFIX": servers.prefix}  # fmt: skip
    args = ("-P", "prefork", "-Q", PREFORK_QUEUE)
    with services.running_worker("tests.web.web_app", log, env, *args, hostname=PREFORK):
        yield log


async def _stats(client_app: Celery) -> Any:
    replies = await client_app.control.abroadcast(
        "stats", destination=[PREFORK], reply=True, timeout=5.0
    )
    return replies[0][PREFORK] if replies else None


async def _alive(client: Any, hostname: str) -> Any:
    """Whether the dashboard has seen ``hostname`` alive, waiting for its events."""

    async def known() -> Any:
        answer = await client.get("/api/workers", params={"status": "true"})
        return answer.json().get(hostname)

    return await until(known)


async def test_control_endpoints_steer_a_real_worker(client_app: Celery, prefork: Path) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:
        assert await _alive(client, PREFORK), prefork.read_text()
        base = f"/api/worker/pool/grow/{PREFORK}"
        grown = await client.post(base, params={"n": 2})
        assert grown.status_code == 200, grown.text
        assert grown.json() == {"message": f"Growing '{PREFORK}' worker's pool by 2"}
        assert (await _stats(client_app))["pool"]["max-concurrency"] == 3
        shrunk = await client.post(f"/api/worker/pool/shrink/{PREFORK}", params={"n": 2})
        assert shrunk.status_code == 200, shrunk.text
        assert (await _stats(client_app))["pool"]["max-concurrency"] == 1

        queue = f"extra-{uuid.uuid4().hex[:8]}"
        added = await client.post(
            f"/api/worker/queue/add-consumer/{PREFORK}", params={"queue": queue}
        )
        assert added.status_code == 200 and queue in added.json()["message"], added.text
        consumed = await client_app.control.abroadcast(
            "active_queues", destination=[PREFORK], reply=True, timeout=2.0
        )
        assert queue in {q["name"] for q in consumed[0][PREFORK]}
        dropped = await client.post(
            f"/api/worker/queue/cancel-consumer/{PREFORK}", params={"queue": queue}
        )
        assert dropped.status_code == 200, dropped.text

        limited = await client.post(
            "/api/task/rate-limit/webw.add", params={"workername": PREFORK, "ratelimit": "100/m"}
        )
        assert limited.status_code == 200, limited.text
        timed = await client.post(
            "/api/task/timeout/webw.sleep", params={"workername": PREFORK, "soft": 30, "hard": 40}
        )
        assert timed.status_code == 200, timed.text

        posted = await client.post(
            "/api/task/async-apply/webw.sleep", json={"args": [30], "queue": PREFORK_QUEUE}
        )
        task_id = posted.json()["task-id"]

        async def running() -> Any:
            info = await client.get(f"/api/task/info/{task_id}")
            return info.status_code == 200 and info.json()["state"] == "STARTED"

        assert await until(running), prefork.read_text()
        killed = await client.post(f"/api/task/revoke/{task_id}", params={"terminate": "true"})
        assert killed.status_code == 200, killed.text
        result = (await client.get(f"/api/task/result/{task_id}", params={"timeout": 20})).json()
        assert result["state"] == "REVOKED", prefork.read_text()


async def test_control_refusals_name_the_problem(client_app: Celery, worker: Path) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:
        assert await _alive(client, HOSTNAME), worker.read_text()
        unknown = await client.post("/api/worker/pool/grow/nobody@nowhere")
        restart = await client.post(f"/api/worker/pool/restart/{HOSTNAME}")
        fixed = await client.post(f"/api/worker/pool/grow/{HOSTNAME}")
        no_task = await client.post(
            "/api/task/rate-limit/webw.nope", params={"workername": HOSTNAME, "ratelimit": "1/s"}
        )
        no_queue = await client.post(f"/api/worker/queue/add-consumer/{HOSTNAME}")
        bad_n = await client.post(f"/api/worker/pool/grow/{HOSTNAME}", params={"n": "many"})
    assert unknown.status_code == 404 and "nobody@nowhere" in unknown.json()["error"]
    assert restart.status_code == 403 and "Failed to restart" in restart.json()["error"]
    assert fixed.status_code == 403 and "fixed size" in fixed.json()["error"]
    assert no_task.status_code == 404 and "webw.nope" in no_task.json()["error"]
    assert no_queue.status_code == 400 and "queue" in no_queue.json()["error"]
    assert bad_n.status_code == 400 and "n must be" in bad_n.json()["error"]


async def test_the_workers_page_buttons_steer_a_worker(client_app: Celery, prefork: Path) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:

        async def listed() -> Any:
            page = await client.get("/workers")
            return page.text if f"/workers/{quote(PREFORK)}/control" in page.text else None

        assert await until(listed), prefork.read_text()
        url = f"/workers/{PREFORK}/control"
        grown = await client.post(url, data={"action": "grow"}, follow_redirects=False)
        assert grown.status_code == 303 and "done=" in grown.headers["location"], grown.text
        assert (await _stats(client_app))["pool"]["max-concurrency"] == 2
        shown = await client.get(grown.headers["location"])
        assert "pool" in shown.text.lower() and 'class="notice"' in shown.text
        shrunk = await client.post(url, data={"action": "shrink"}, follow_redirects=False)
        assert "done=" in shrunk.headers["location"]
        assert (await _stats(client_app))["pool"]["max-concurrency"] == 1
        no_queue = await client.post(
            url, data={"action": "add-consumer", "queue": ""}, follow_redirects=False
        )
        assert "failed=" in no_queue.headers["location"]
        limited = await client.post(
            url, data={"action": "rate-limit", "task": "webw.add", "rate": "7/m"},
            follow_redirects=False,
        )  # fmt: skip
        assert "done=" in limited.headers["location"], limited.headers["location"]
        timed = await client.post(
            url, data={"action": "time-limit", "task": "webw.sleep", "soft": "11", "hard": ""},
            follow_redirects=False,
        )  # fmt: skip
        assert "done=" in timed.headers["location"], timed.headers["location"]
        registered = await client_app.control.abroadcast(
            "registered", {"taskinfoitems": ["rate_limit", "soft_time_limit", "time_limit"]},
            destination=[PREFORK], reply=True, timeout=5.0,
        )  # fmt: skip
        listed = registered[0][PREFORK]
        assert "webw.add [rate_limit=7/m]" in listed, listed
        assert "webw.sleep [soft_time_limit=11.0]" in listed, listed
        no_autoscale = await client.post(
            url, data={"action": "autoscale", "min": "1", "max": "3"}, follow_redirects=False
        )
        assert "Autoscale+not+enabled" in no_autoscale.headers["location"]  # a fixed pool
        bad_task = await client.post(
            url, data={"action": "rate-limit", "task": "no.such", "rate": "1/s"},
            follow_redirects=False,
        )  # fmt: skip
        assert "Unknown+task" in bad_task.headers["location"]
        unknown = await client.post("/workers/nobody@nowhere/control", data={"action": "grow"})
        assert unknown.status_code == 404
