"""The dashboard's API, pages and metrics in-process, fed events by hand (no broker).

Events go straight into the dashboard's feed (``Feed.take``) as a receiver would hand them
over; the API's task records are compared with what the real Celery's ``State`` makes of
the same events, so Flower's JSON shape is Celery's.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from celeriac import Celery
from celeriac.web import create_app
from celeriac.web.api import MAX_BODY
from celeriac.web.auth import ENV_BASIC_AUTH, ENV_TOKEN, parse_basic_auth
from celeriac.web.openapi import SCHEMA

pytestmark = pytest.mark.timeout(30)

WORKER = "w1@host"


def make_app() -> Celery:
    app = Celery("webtest", broker="memory://")  # the memory broker holds results too

    @app.task(name="web.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


def client_of(web: Starlette, server: str = "127.0.0.1", auth: str | None = None) -> Any:
    headers = {}
    if auth is not None:
        headers["authorization"] = "Basic " + base64.b64encode(auth.encode()).decode()
    transport = httpx.ASGITransport(app=web, client=("127.0.0.1", 40000))
    return httpx.AsyncClient(transport=transport, base_url=f"http://{server}", headers=headers)


@pytest.fixture
async def web() -> AsyncIterator[Starlette]:
    yield create_app(make_app())


def story(task_id: str, name: str = "web.add", fail: bool = False) -> list[dict[str, Any]]:
    """The events of one task run, as a worker with -E sends them."""
    now = time.time()
    base = {"uuid": task_id, "hostname": WORKER, "utcoffset": 0, "pid": 7, "clock": 1}
    events = [
        {**base, "type": "task-received", "name": name, "args": "[2, 3]", "kwargs": "{}",
         "retries": 0, "eta": None, "expires": None, "root_id": task_id, "parent_id": None,
         "timestamp": now},
        {**base, "type": "task-started", "timestamp": now + 0.01},
    ]  # fmt: skip
    if fail:
        trace = "Traceback ...\nValueError: boom"
        events.append({**base, "type": "task-failed", "exception": "ValueError('boom')",
                       "traceback": trace, "timestamp": now + 0.02})  # fmt: skip
    else:
        events.append({**base, "type": "task-succeeded", "result": "5", "runtime": 0.012,
                       "timestamp": now + 0.02})  # fmt: skip
    return events


def heartbeat() -> dict[str, Any]:
    now = time.time()
    return {"type": "worker-heartbeat", "hostname": WORKER, "timestamp": now, "utcoffset": 0,
            "pid": 7, "freq": 2.0, "active": 0, "processed": 3, "loadavg": [0.1, 0.2, 0.3],
            "sw_ident": "py-celeriac", "sw_ver": "0.1", "sw_sys": "Linux", "clock": 2,
            "local_received": now}  # fmt: skip


def feed(web: Starlette, events: list[dict[str, Any]]) -> None:
    for event in events:
        web.state.dashboard.feed.take({**event, "local_received": time.time()})


# --- Flower's shapes ----------------------------------------------------------------------
async def test_task_info_has_celerys_fields_and_values(web: Starlette) -> None:
    from celery.events.state import State as CeleryState  # noqa: PLC0415

    task_id = str(uuid.uuid4())
    events = story(task_id)
    feed(web, events)
    celery_state = CeleryState()
    for event in events:
        celery_state.event({**event, "local_received": time.time()})
    expected = celery_state.tasks[task_id].as_dict()
    async with client_of(web) as client:
        answer = await client.get(f"/api/task/info/{task_id}")
    assert answer.status_code == 200
    info = answer.json()
    assert list(info) == list(expected)
    for key in ("uuid", "name", "state", "args", "kwargs", "result", "runtime", "retries",
                "received", "started", "succeeded", "timestamp", "root_id"):  # fmt: skip
        assert info[key] == expected[key], key
    assert info["worker"] == WORKER


async def test_unknown_task_info_is_404_naming_it(web: Starlette) -> None:
    async with client_of(web) as client:
        answer = await client.get("/api/task/info/nope-123")
    assert answer.status_code == 404
    assert "nope-123" in answer.json()["error"]


async def test_task_list_filters_sorts_and_pages(web: Starlette) -> None:
    ok, bad, other = (str(uuid.uuid4()) for _ in range(3))
    feed(web, story(ok) + story(bad, fail=True) + story(other, name="web.other"))
    async with client_of(web) as client:
        everything = (await client.get("/api/tasks")).json()
        failed = (await client.get("/api/tasks", params={"state": "FAILURE"})).json()
        named = (await client.get("/api/tasks", params={"taskname": "web.other"})).json()
        by_worker = (await client.get("/api/tasks", params={"workername": "w9@x"})).json()
        first = (await client.get("/api/tasks", params={"limit": 1})).json()
        rest = (await client.get("/api/tasks", params={"offset": 1, "sort_by": "name"})).json()
        all_ = (await client.get("/api/tasks", params={"state": "All"})).json()
        found = (await client.get("/api/tasks", params={"search": other[:8]})).json()
        bad_limit = await client.get("/api/tasks", params={"limit": "ten"})
        bad_sort = await client.get("/api/tasks", params={"sort_by": "args"})
        huge = await client.get("/api/tasks", params={"limit": 2**63, "offset": 2**64})
    assert set(everything) == {ok, bad, other}
    assert huge.status_code == 200 and huge.json() == {}  # found by schemathesis: was a 500
    assert list(failed) == [bad] and failed[bad]["traceback"].endswith("ValueError: boom")
    assert list(named) == [other]
    assert by_worker == {}
    assert list(first) == [other]  # newest first
    assert [t["name"] for t in rest.values()] == ["web.add", "web.other"]
    assert set(all_) == set(everything)
    assert list(found) == [other]
    assert bad_limit.status_code == 400 and "limit" in bad_limit.json()["error"]
    assert bad_sort.status_code == 400 and "sort_by" in bad_sort.json()["error"]


async def test_task_types(web: Starlette) -> None:
    feed(web, story(str(uuid.uuid4()), name="web.b") + story(str(uuid.uuid4()), name="web.a"))
    async with client_of(web) as client:
        answer = (await client.get("/api/task/types")).json()
    assert answer == {"task-types": ["web.a", "web.b"]}


async def test_workers_from_heartbeats(web: Starlette) -> None:
    feed(web, [heartbeat()])
    async with client_of(web) as client:
        workers = (await client.get("/api/workers")).json()
        status = (await client.get("/api/workers", params={"status": "true"})).json()
        one = await client.get("/api/workers", params={"workername": "ghost@x"})
    assert workers[WORKER]["status"] is True
    assert workers[WORKER]["processed"] == 3 and workers[WORKER]["pid"] == 7
    assert workers[WORKER]["loadavg"] == [0.1, 0.2, 0.3]
    assert status == {WORKER: True}
    assert one.status_code == 404 and "ghost@x" in one.json()["error"]


# --- submitting and bad input -------------------------------------------------------------
async def test_async_apply_returns_an_id(web: Starlette) -> None:
    async with client_of(web) as client:
        answer = await client.post("/api/task/async-apply/web.add", json={"args": [1, 2]})
        sent = await client.post("/api/task/send-task/not.here", json={"kwargs": {"a": 1}})
        result = await client.get(f"/api/task/result/{answer.json()['task-id']}")
    assert answer.status_code == 200
    assert uuid.UUID(answer.json()["task-id"])
    assert answer.json()["state"] == "PENDING"
    assert result.json() == {"task-id": answer.json()["task-id"], "state": "PENDING"}
    assert sent.status_code == 200 and uuid.UUID(sent.json()["task-id"])


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/api/task/async-apply/no.such", b"{}", 404, "Unknown task 'no.such'"),
        ("/api/task/async-apply/web.add", b'{"args": [1,', 400, "not JSON"),
        ("/api/task/async-apply/web.add", b"[1, 2]", 400, "JSON object"),
        ("/api/task/async-apply/web.add", b'{"args": "1, 2"}', 400, "args must be a JSON array"),
        ("/api/task/send-task/web.add", b'{"kwargs": [1]}', 400, "kwargs must be a JSON object"),
        ("/api/task/send-task/web.add", b'{"bogus": 1}', 400, "bogus"),
        ("/api/task/send-task/web.add", b'{"countdown": "soon"}', 400, "invalid option"),
        ("/api/task/send-task/web.add", b'{"eta": "tomorrow"}', 400, "invalid option"),
        ("/api/task/send-task/web.add", b"\xff\xfe", 400, "not JSON"),
    ],
)
async def test_bad_input_is_4xx_naming_the_problem(
    web: Starlette, path: str, body: bytes, status: int, words: str
) -> None:
    async with client_of(web) as client:
        answer = await client.post(path, content=body)
    assert answer.status_code == status
    assert words in answer.json()["error"]


async def test_oversize_body_is_413(web: Starlette) -> None:
    body = b'{"args": ["' + b"x" * MAX_BODY + b'"]}'
    async with client_of(web) as client:
        answer = await client.post("/api/task/async-apply/web.add", content=body)
    assert answer.status_code == 413
    assert "limit" in answer.json()["error"]


async def test_result_without_backend_is_503() -> None:
    web = create_app(Celery("nobackend", broker="amqp://127.0.0.1:1//"))
    async with client_of(web) as client:
        answer = await client.get(f"/api/task/result/{uuid.uuid4()}")
    assert answer.status_code == 503 and "result backend" in answer.json()["error"]
    assert "state" not in answer.json()


async def test_result_timeout_must_be_a_number(web: Starlette) -> None:
    async with client_of(web) as client:
        bad = await client.get("/api/task/result/x", params={"timeout": "soon"})
    assert bad.status_code == 400 and "timeout" in bad.json()["error"]


async def test_revoke_persists(web: Starlette) -> None:
    app = web.state.dashboard.app
    task_id = str(uuid.uuid4())
    async with client_of(web) as client:
        answer = await client.post(f"/api/task/revoke/{task_id}")
    assert answer.status_code == 200 and answer.json() == {"message": f"Revoked '{task_id}'"}
    transport = await app.aget_transport()
    assert task_id in await transport.revoked()


# --- security -----------------------------------------------------------------------------
def test_parse_basic_auth() -> None:
    assert parse_basic_auth("a:b, c:d:e") == {("a", "b"), ("c", "d:e")}
    assert parse_basic_auth("") == frozenset()
    with pytest.raises(ValueError, match="'nopass' is not user:password"):
        parse_basic_auth("a:b,nopass")


async def test_every_request_needs_credentials_when_set() -> None:
    web = create_app(make_app(), basic_auth="ann:s3cret,bob:pw")
    async with client_of(web) as anonymous, client_of(web, auth="ann:wrong") as wrong:
        for path in ("/", "/api/tasks", "/metrics", "/static/live.js", "/api/openapi.json"):
            answer = await anonymous.get(path)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Basic")
        assert (await wrong.get("/api/tasks")).status_code == 401
    async with client_of(web, auth="bob:pw") as bob:
        assert (await bob.get("/api/tasks")).status_code == 200
        posted = await bob.post("/api/task/async-apply/web.add", json={"args": [1, 2]})
        assert posted.status_code == 200


async def test_a_bearer_token_passes_as_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_TOKEN, "t0k3n, other")
    web = create_app(make_app(), basic_auth="ann:s3cret")
    async with client_of(web) as client:
        bearer = {"authorization": "Bearer t0k3n"}
        good = await client.get("/api/tasks", headers=bearer)
        posted = await client.post(
            "/api/task/async-apply/web.add", json={"args": [1, 2]}, headers=bearer
        )
        wrong = await client.get("/api/tasks", headers={"authorization": "Bearer t0k3"})
        empty = await client.get("/api/tasks", headers={"authorization": "Bearer "})
    assert good.status_code == 200 and posted.status_code == 200
    assert wrong.status_code == 401 and empty.status_code == 401
    only_token = create_app(make_app(), token="just-this")
    async with client_of(only_token) as client:
        assert (await client.get("/api/tasks")).status_code == 401
        ok = await client.get("/api/tasks", headers={"authorization": "bearer just-this"})
        assert ok.status_code == 200


async def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_BASIC_AUTH, "env:pw")
    web = create_app(make_app())
    async with client_of(web) as anonymous, client_of(web, auth="env:pw") as known:
        assert (await anonymous.get("/api/tasks")).status_code == 401
        assert (await known.get("/api/tasks")).status_code == 200


async def test_actions_refused_without_auth_off_loopback() -> None:
    web = create_app(make_app(), address="0.0.0.0")
    async with client_of(web) as client:
        listed = await client.get("/api/tasks")
        posted = await client.post("/api/task/async-apply/web.add", json={"args": [1, 2]})
        revoked = await client.post("/api/task/revoke/abc")
    assert listed.status_code == 200
    assert posted.status_code == 403 and "--basic-auth" in posted.json()["error"]
    assert revoked.status_code == 403
    allowed = create_app(make_app(), address="0.0.0.0", basic_auth="u:p")
    async with client_of(allowed, auth="u:p") as client:
        posted = await client.post("/api/task/async-apply/web.add", json={"args": [1, 2]})
    assert posted.status_code == 200


async def test_mounted_dashboard_decides_by_the_request_server_address() -> None:
    host = Starlette(routes=[Mount("/dash", create_app(make_app()))])
    async with client_of(host, server="10.1.2.3") as remote:
        refused = await remote.post("/dash/api/task/async-apply/web.add", json={})
    async with client_of(host) as local:
        page = await local.get("/dash/")
        posted = await local.post("/dash/api/task/async-apply/web.add", json={})
    assert refused.status_code == 403
    assert posted.status_code == 200
    assert page.status_code == 200 and 'href="/dash/static/style.css"' in page.text


# --- metrics, schema, pages ---------------------------------------------------------------
async def test_metrics_count_tasks_runtime_and_workers(web: Starlette) -> None:
    feed(web, [heartbeat(), *story(str(uuid.uuid4())), *story(str(uuid.uuid4()), fail=True)])
    async with client_of(web) as client:
        answer = await client.get("/metrics")
    text = answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    assert 'celeriac_tasks_total{name="web.add",state="SUCCESS"} 1.0' in text
    assert 'celeriac_tasks_total{name="web.add",state="FAILURE"} 1.0' in text
    assert 'celeriac_tasks_total{name="web.add",state="RECEIVED"} 2.0' in text
    assert 'celeriac_task_runtime_seconds_count{name="web.add"} 1.0' in text
    assert "celeriac_workers_up 1.0" in text
    assert 'celeriac_events_total{type="worker-heartbeat"} 1.0' in text


def _route_table(routes: list[Any]) -> set[tuple[str, str]]:
    found = set()
    for route in routes:
        if isinstance(route, Route) and route.path.startswith(("/api", "/metrics", "/healthcheck")):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((route.path.replace(":path", ""), method.lower()))
    return found


async def test_openapi_schema_matches_the_routes(web: Starlette) -> None:
    documented = {(path, method) for path, ops in SCHEMA["paths"].items() for method in ops}
    assert documented == _route_table(web.routes)
    async with client_of(web) as client:
        served = (await client.get("/api/openapi.json")).json()
    assert served["openapi"].startswith("3.1") and served["paths"].keys() == SCHEMA["paths"].keys()


async def test_pages_render_what_events_said(web: Starlette) -> None:
    ok, bad = str(uuid.uuid4()), str(uuid.uuid4())
    feed(web, [heartbeat(), *story(ok), *story(bad, fail=True)])
    async with client_of(web) as client:
        overview = await client.get("/")
        workers = await client.get("/workers")
        tasks = await client.get("/tasks", params={"state": "FAILURE"})
        detail = await client.get(f"/task/{bad}")
        fragment = await client.get("/tasks", params={"fragment": "live"})
        missing = await client.get("/task/unknown-id")
    assert overview.status_code == 200
    assert 'data-state="SUCCESS">1<' in overview.text and bad in overview.text  # recent failure
    names = overview.text.split('id="names"')[1].split("</table>")[0]
    assert "web.add" in names and "<td>2</td>" in names and "12.0 ms" in names
    assert WORKER in workers.text and "ONLINE" in workers.text
    assert bad in tasks.text and ok not in tasks.text
    assert "ValueError: boom" in detail.text and "STARTED" in detail.text
    assert "<html" not in fragment.text and ok in fragment.text and bad in fragment.text
    assert missing.status_code == 404 and "unknown-id" in missing.text


async def test_pages_escape_what_tasks_carry(web: Starlette) -> None:
    task_id = str(uuid.uuid4())
    events = story(task_id)
    events[0]["args"] = '["<script>alert(1)</script>"]'
    feed(web, events)
    async with client_of(web) as client:
        page = await client.get(f"/task/{task_id}")
    assert "<script>alert(1)" not in page.text and "&lt;script&gt;" in page.text


async def test_live_subscribers_get_every_event(web: Starlette) -> None:
    feed_ = web.state.dashboard.feed
    async with feed_.subscribe() as queue:
        feed(web, [heartbeat()])
        event = queue.get_nowait()
    assert event["type"] == "worker-heartbeat"
    feed(web, [heartbeat()])  # after the block: no one listens, nothing queues
    assert queue.empty()


async def test_task_list_filters_by_received_time(web: Starlette) -> None:
    import datetime as dt  # noqa: PLC0415

    task_id = str(uuid.uuid4())
    feed(web, story(task_id))
    now = dt.datetime.now()
    before = (now - dt.timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M")
    after = (now + dt.timedelta(minutes=2)).strftime("%Y-%m-%d %H:%M")
    async with client_of(web) as client:
        window = {"received_start": before, "received_end": after}
        inside = (await client.get("/api/tasks", params=window)).json()
        later = (await client.get("/api/tasks", params={"received_start": after})).json()
        bad = await client.get("/api/tasks", params={"received_end": "yesterday"})
    assert list(inside) == [task_id]
    assert later == {}
    assert bad.status_code == 400 and "received_end" in bad.json()["error"]


async def test_event_stream_writes_server_sent_events(web: Starlette) -> None:
    from celeriac.web.api import _sse  # noqa: PLC0415

    feed_ = web.state.dashboard.feed
    stream = _sse(feed_, "task-")
    assert await anext(stream) == ": connected\n\n"  # subscribed from here on
    task_id = str(uuid.uuid4())
    feed(web, [heartbeat(), *story(task_id)])
    first = await anext(stream)
    await stream.aclose()
    assert first.startswith("event: task-received\ndata: {")
    assert first.endswith("\n\n") and task_id in first


async def test_feed_reconnects_after_the_broker_fails(
    web: Starlette, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio  # noqa: PLC0415

    from celeriac.retry import Backoff  # noqa: PLC0415

    feed_ = web.state.dashboard.feed
    attempts: list[int] = []

    class Failing:
        def __init__(self, **_: Any) -> None:
            attempts.append(1)

        async def aiter_events(self) -> AsyncIterator[dict[str, Any]]:
            raise ConnectionError("broker down")
            yield {}  # an async generator

        async def aclose(self) -> None:
            pass

    async def no_wait(self: Backoff) -> None:
        await asyncio.sleep(0)

    monkeypatch.setattr(feed_.app.events, "Receiver", Failing)
    monkeypatch.setattr(Backoff, "sleep", no_wait)
    feed_.start()
    for _ in range(200):
        if len(attempts) >= 3:
            break
        await asyncio.sleep(0.01)
    await feed_.stop()
    assert len(attempts) >= 3
    assert "broker down" in caplog.text and not feed_.connected


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"origin": "http://evil.example"}, "cross-site"),
        ({"sec-fetch-site": "cross-site"}, "cross-site"),
        ({"host": "rebound.example:5555"}, "loopback Host"),
    ],
)
async def test_browsers_of_other_sites_may_not_act(
    web: Starlette, headers: dict[str, str], words: str
) -> None:
    async with client_of(web) as client:
        posted = await client.post("/api/task/async-apply/web.add", json={}, headers=headers)
        revoked = await client.post("/api/task/revoke/abc", headers=headers)
        listed = await client.get("/api/tasks", headers=headers)
    assert posted.status_code == 403 and words in posted.json()["error"]
    assert revoked.status_code == 403
    assert listed.status_code == 200  # reading stays open


async def test_same_origin_pages_may_act(web: Starlette) -> None:
    headers = {"origin": "http://127.0.0.1", "sec-fetch-site": "same-origin"}
    async with client_of(web) as client:
        posted = await client.post("/api/task/async-apply/web.add", json={}, headers=headers)
    assert posted.status_code == 200


async def test_broker_or_backend_down_is_503_naming_it() -> None:
    app = Celery("down", broker="redis://127.0.0.1:1/0")  # nothing listens on port 1
    app.conf.broker_transport_options = {"max_retries": 0}
    app.conf.result_backend_transport_options = {"max_retries": 0}
    app.task(name="down.t")(lambda: None)
    web = create_app(app)
    async with client_of(web) as client:
        posted = await client.post("/api/task/async-apply/down.t", json={})
        result = await client.get("/api/task/result/abc")
    assert posted.status_code == 503 and "broker did not take down.t" in posted.json()["error"]
    assert result.status_code == 503 and "result backend" in result.json()["error"]


async def test_deeply_nested_body_is_400(web: Starlette) -> None:
    body = b'{"args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    async with client_of(web) as client:
        answer = await client.post("/api/task/async-apply/web.add", content=body)
    assert answer.status_code == 400 and "nested" in answer.json()["error"]


async def test_secrets_in_arguments_are_masked_before_anything_keeps_them() -> None:
    task_id = str(uuid.uuid4())
    web = create_app(make_app())
    events = story(task_id)
    events[0]["kwargs"] = "{'user': 'ann', 'db_password': 'hunter2', 'author': 'Tolkien'}"
    feed(web, events)
    async with client_of(web) as client:
        info = (await client.get(f"/api/task/info/{task_id}")).json()
        page = (await client.get(f"/task/{task_id}")).text
    assert "hunter2" not in info["kwargs"] and "hunter2" not in page
    assert info["kwargs"] == "{'user': 'ann', 'db_password': '********', 'author': 'Tolkien'}"
    plain = create_app(make_app(), mask_pattern="")  # masking off
    feed(plain, events)
    async with client_of(plain) as client:
        kept = (await client.get(f"/api/task/info/{task_id}")).json()
    assert "'db_password': 'hunter2'" in kept["kwargs"]
    with pytest.raises(ValueError, match="mask pattern"):
        create_app(make_app(), mask_pattern="(")
