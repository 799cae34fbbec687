"""``app.send_many`` on the real brokers: Redis, RabbitMQ and SQLite.

Every message of a batch larger than one chunk reaches its queue once, with the id its
AsyncResult holds; a countdown item carries its eta; a bad item stops the whole batch before
anything is stored. (PostgreSQL holds results and schedules, not queues: it is no broker.)
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery, bulk
from celeriac.exceptions import SerializationError
from celeriac.protocol.message import decode_task
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

amqp_url = amqp_fixtures.amqp_url
amqp_vhost = amqp_fixtures.amqp_vhost


@pytest.fixture(params=["redis", "amqp", "sqlite"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Celery]:
    prefix = ""
    options: dict[str, Any] = {}
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        prefix = key_prefix("bulk")
        url, options = REDIS_URL, {"global_keyprefix": prefix}
    elif request.param == "amqp":
        request.applymarker(pytest.mark.amqp)
        url = request.getfixturevalue("amqp_url")
    else:
        url = f"sqlite:///{tmp_path}/broker.sqlite"
    app = Celery(
        "bulkb",
        broker=url,
        set_as_current=False,
        broker_transport_options=options,
        task_default_queue=f"bulk.{uuid.uuid4().hex[:8]}",
        task_ignore_result=True,
    )
    yield app
    await app.aclose()
    if prefix:
        client = redis_client()
        delete_prefixed(client, prefix)
        client.close()


async def _drain(app: Celery, queue: str, expected: int) -> list[Any]:
    transport = await app.aget_transport()
    found: list[Any] = []
    for _ in range(50):
        deliveries = await transport.fetch([queue], limit=expected, timeout=0.5)
        found += [decode_task(d.envelope, ["json"]) for d in deliveries]
        await transport.ack(deliveries)
        if len(found) >= expected or (not deliveries and found):
            break
    return found


async def test_a_batch_of_several_chunks_arrives_whole(
    app: Celery, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="bulkb.add")
    def add(x: int, y: int) -> int:
        """Adds."""
        return x + y

    monkeypatch.setattr(bulk, "CHUNK", 40)
    queue = app.conf["task_default_queue"]
    results = await app.asend_many(
        [add.s(i, i) for i in range(100)] + [add.s(0, 0).set(countdown=60)]
    )
    found = await _drain(app, queue, 101)
    assert sorted(m.id for m in found) == sorted(r.id for r in results)
    assert sorted(m.args[0] for m in found) == [0, *range(100)]
    # As Celery sends it: on the queue, with its eta (a worker holds it broker-side).
    assert [m.id for m in found if m.eta is not None] == [results[-1].id]


async def test_a_bad_item_stores_nothing(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    @app.task(name="bulkb.add")
    def add(x: int, y: int) -> int:
        """Adds."""
        return x + y

    monkeypatch.setattr(bulk, "CHUNK", 3)
    queue = app.conf["task_default_queue"]
    with pytest.raises(SerializationError, match=r"item 7 of send_many\(\)"):
        await app.asend_many([add.s(i, i) for i in range(7)] + [add.s(object(), 0)])
    transport = await app.aget_transport()
    assert await transport.fetch([queue], limit=10, timeout=0.2) == []
