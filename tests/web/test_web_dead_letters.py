"""Dead letters in the dashboard: a message a worker set aside is listed with its reason, on
the API and the page; requeued from the page's form it runs once the worker knows its task.
Against an embedded worker on ``memory://`` and a real worker on Redis and RabbitMQ."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.contrib.testing.worker import start_worker
from celeriac.web import create_app
from tests.web.test_web_worker import AUTH, client_of, until

pytestmark = [pytest.mark.timeout(90)]


async def _letter_of(client: Any, task_id: str) -> Any:
    async def listed() -> Any:
        letters = (await client.get("/api/dead-letters")).json()
        return next((letter for letter in letters if letter["task_id"] == task_id), None)

    return await until(listed, seconds=20)


async def test_a_requeued_dead_letter_runs_once_its_task_is_known() -> None:
    name = f"memory://dead-{uuid.uuid4().hex}"
    app = Celery("dead", broker=name, backend="cache+memory://", set_as_current=False)
    web = create_app(app)
    with start_worker(app, perform_ping_check=False):
        async with web.router.lifespan_context(web), client_of(web, auth=None) as client:
            sent = await app.asend_task("dead.later", (2, 3))
            letter = await _letter_of(client, sent.id)
            assert letter is not None, "the unregistered task was not dead-lettered"
            assert letter["task"] == "dead.later" and "unregistered" in letter["reason"]
            assert letter["argsrepr"] == "(2, 3)"
            page = await client.get("/dead-letters")
            assert page.status_code == 200 and letter["id"] in page.text

            app.task(name="dead.later")(lambda x, y: x + y)
            form = await client.post(
                "/dead-letters/requeue", data={"id": letter["id"]}, follow_redirects=False
            )
            assert form.status_code == 303, form.text
            assert form.headers["location"].endswith("/dead-letters?requeued=1")

            async def succeeded() -> bool:  # FAILURE (NotRegistered) until it runs
                return (await app.AsyncResult(sent.id).ameta()).get("status") == "SUCCESS"

            assert await until(succeeded, seconds=20)
            assert await app.AsyncResult(sent.id).aget(timeout=5) == 5
            left = (await client.get("/api/dead-letters")).json()
            assert [entry for entry in left if entry["task_id"] == sent.id] == []


async def test_bad_requeue_requests_name_the_problem() -> None:
    web = create_app(Celery("dead", broker=f"memory://dead-{uuid.uuid4().hex}"))
    async with client_of(web, auth=None) as client:
        empty = await client.post("/api/dead-letters/requeue", json={})
        wrong = await client.post("/api/dead-letters/requeue", json={"ids": "abc"})
        limit = await client.get("/api/dead-letters", params={"limit": "lots"})
        form = await client.post("/dead-letters/requeue", data={})
        foreign = await client.post(
            "/api/dead-letters/requeue", json={"all": True},
            headers={"origin": "http://evil.example"},
        )  # fmt: skip
    assert empty.status_code == wrong.status_code == 400 and "ids" in empty.json()["error"]
    assert limit.status_code == 400 and "limit" in limit.json()["error"]
    assert form.status_code == 400
    assert foreign.status_code == 403 and "cross-site" in foreign.json()["error"]


@pytest.mark.redis
@pytest.mark.amqp
async def test_a_real_workers_dead_letter_is_listed_and_requeued(
    client_app: Celery, worker: Path
) -> None:
    web = create_app(client_app, basic_auth=AUTH)
    async with web.router.lifespan_context(web), client_of(web) as client:
        posted = await client.post("/api/task/send-task/webw.unknown", json={"args": [7]})
        task_id = posted.json()["task-id"]
        letter = await _letter_of(client, task_id)
        assert letter is not None, worker.read_text()
        assert "unregistered" in letter["reason"] and letter["argsrepr"] == "[7]"
        moved = await client.post("/api/dead-letters/requeue", json={"ids": [letter["id"]]})
        assert moved.json() == {"requeued": 1}

        async def set_aside_again() -> Any:  # the worker still does not know the task
            again = await _letter_of(client, task_id)
            return again if again is not None and again["id"] != letter["id"] else None

        assert await until(set_aside_again), worker.read_text()
        done = await client.post("/api/dead-letters/requeue", json={"all": True})
        assert done.status_code == 200 and done.json()["requeued"] >= 1


async def test_dead_letters_are_purged_by_id_from_the_page_and_all_from_the_api() -> None:
    name = f"memory://dead-{uuid.uuid4().hex}"
    app = Celery("dead", broker=name, backend="cache+memory://", set_as_current=False)
    web = create_app(app, basic_auth=AUTH)
    with start_worker(app, perform_ping_check=False):
        async with web.router.lifespan_context(web), client_of(web) as client:
            sent = [await app.asend_task("dead.never", (n,)) for n in range(3)]
            letters = [await _letter_of(client, result.id) for result in sent]
            assert all(letters), "the unregistered tasks were not dead-lettered"
            page = await client.get("/dead-letters")
            assert 'action="/dead-letters/purge"' in page.text and "data-confirm" in page.text

            form = await client.post(
                "/dead-letters/purge", data={"id": letters[0]["id"]}, follow_redirects=False
            )
            assert form.status_code == 303, form.text
            assert form.headers["location"].endswith("/dead-letters?purged=1")
            shown = await client.get(form.headers["location"])
            assert "Deleted 1 message(s) for good." in shown.text
            left = {letter["id"] for letter in (await client.get("/api/dead-letters")).json()}
            assert left == {letters[1]["id"], letters[2]["id"]}

            purged = await client.post("/api/dead-letters/purge", json={"all": True})
            assert purged.status_code == 200 and purged.json() == {"purged": 2}
            assert (await client.get("/api/dead-letters")).json() == []


async def test_purging_needs_credentials_and_a_named_choice() -> None:
    app = Celery("dead", broker=f"memory://dead-{uuid.uuid4().hex}", set_as_current=False)
    guarded = create_app(app, basic_auth=AUTH)
    async with client_of(guarded, auth=None) as anonymous, client_of(guarded) as client:
        api = await anonymous.post("/api/dead-letters/purge", json={"all": True})
        form = await anonymous.post("/dead-letters/purge", data={"all": "1"})
        assert api.status_code == form.status_code == 401
        empty = await client.post("/api/dead-letters/purge", json={})
        form = await client.post("/dead-letters/purge", data={})
        foreign = await client.post(
            "/dead-letters/purge", data={"all": "1"}, headers={"origin": "http://evil.example"}
        )
    assert empty.status_code == 400 and "ids" in empty.json()["error"]
    assert form.status_code == 400
    assert foreign.status_code == 403 and "cross-site" in foreign.json()["error"]
    exposed = create_app(app, address="0.0.0.0")  # no credentials, not on loopback
    async with client_of(exposed, auth=None) as client:
        refused = await client.post("/api/dead-letters/purge", json={"all": True})
    assert refused.status_code == 403 and "--basic-auth" in refused.json()["error"]
