"""``AsyncResult.get(timeout=)`` while the result store dies: it waits through the outage and
its timeout holds (an overshoot of a second at most here; the read at the timeout is bounded
by 50 ms)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
import redis

from celeriac import Celery
from celeriac.exceptions import TimeoutError as ResultTimeout
from tests.faults.harness import RedisServer, module_redis

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


server = module_redis(aof=False)


@pytest.fixture
def app(server: RedisServer) -> Iterator[Celery]:
    application = Celery("wait", broker=server.url, backend=server.url)
    yield application
    application.close()


def _store(port: int, task_id: str, value: int) -> None:
    """Write a SUCCESS document as a worker would (stored, then published)."""
    document = json.dumps(
        {"status": "SUCCESS", "result": value, "task_id": task_id, "traceback": None}
    )
    client = redis.Redis(port=port)
    client.set(f"celery-task-meta-{task_id}", document)
    client.publish(f"celery-task-meta-{task_id}", document)
    client.close()


def test_get_waits_through_an_outage(server: RedisServer, app: Celery) -> None:
    waiting = app.AsyncResult("through-outage")
    with pytest.raises(ResultTimeout):
        waiting.get(timeout=0.2)  # connected and waiting once

    def outage_then_result() -> None:
        time.sleep(0.5)
        server.kill()
        time.sleep(5.0)
        server.start()
        time.sleep(0.5)
        _store(server.port, "through-outage", 5)

    helper = threading.Thread(target=outage_then_result)
    helper.start()
    try:
        assert waiting.get(timeout=40) == 5
    finally:
        helper.join(30)


def test_get_timeout_holds_while_the_store_is_down(server: RedisServer, app: Celery) -> None:
    result = app.AsyncResult("never")
    with pytest.raises(ResultTimeout):
        result.get(timeout=0.2)  # connected and waiting once
    server.kill()
    try:
        started = time.monotonic()
        with pytest.raises(ResultTimeout):
            result.get(timeout=3)
        waited = time.monotonic() - started
        print(f"\nget(timeout=3) with the store down raised TimeoutError after {waited:.3f}s")
        assert waited < 4.0  # before: the read at the timeout retried for 30 s
    finally:
        server.start()
