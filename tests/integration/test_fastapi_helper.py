"""celeriac.contrib.fastapi: a FastAPI app whose lifespan opens the celeriac app and whose
endpoints get it through Depends: submit and await a task run by a worker on Redis; a broker
that is down at start is a warning, not a failed start; no lifespan, a clear error."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest

from celeriac import Celery
from celeriac.contrib.fastapi import celeriac_app, lifespan
from celeriac.contrib.testing.worker import start_worker
from celeriac.exceptions import ImproperlyConfigured
from tests import services

fastapi = pytest.importorskip("fastapi")
Depends = fastapi.Depends

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def celery() -> Iterator[Celery]:
    """An app on the tests' Redis under a prefix of its own, with an ``add`` task."""
    client = services.redis_client()
    prefix = services.key_prefix("fastapi")
    app = Celery("fa", broker=services.REDIS_URL, backend=services.REDIS_URL, set_as_current=False)
    app.conf.broker_transport_options = {"global_keyprefix": prefix}
    app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    app.task(name="fa.add")(lambda x, y: x + y)
    yield app
    services.delete_prefixed(client, prefix)
    client.close()


def _api(celery: Celery) -> Any:
    api = fastapi.FastAPI(lifespan=lifespan(celery))

    @api.post("/add")
    async def add(x: int, y: int, app: Annotated[Any, Depends(celeriac_app)]) -> dict[str, Any]:
        result = await app.asend_task("fa.add", (x, y))
        return {"task_id": result.id, "value": await result.aget(timeout=20)}

    return api


def _client(api: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api)
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_an_endpoint_submits_and_awaits_through_the_dependency(celery: Celery) -> None:
    api = _api(celery)
    with start_worker(celery, perform_ping_check=False):
        async with api.router.lifespan_context(api), _client(api) as client:
            assert api.state.celeriac is celery
            answer = await client.post("/add", params={"x": 2, "y": 40})
    assert answer.status_code == 200, answer.text
    assert answer.json()["value"] == 42
    uuid.UUID(answer.json()["task_id"])


async def test_a_broker_down_at_start_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = Celery("fa", broker=f"redis://127.0.0.1:{port}/0", set_as_current=False)
    api = fastapi.FastAPI(lifespan=lifespan(app))
    with caplog.at_level(logging.WARNING, logger="celeriac"):
        async with api.router.lifespan_context(api):
            pass
    assert any("not connected at start" in r.getMessage() for r in caplog.records)


def test_the_dependency_without_the_lifespan_says_what_to_do() -> None:
    class Request:
        app = fastapi.FastAPI()

    with pytest.raises(ImproperlyConfigured, match="lifespan"):
        celeriac_app(Request())  # type: ignore[arg-type]
