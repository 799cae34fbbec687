"""Sync ``delay()`` on Redis publishes from the calling thread, and falls back where it must.

The calling-thread path must store exactly what the asyncio transport stores (a worker
consumes it), and anything it does not handle (named exchanges, and countdowns bound for
the delayed set under ``broker_delayed_delivery``) must still go through the asyncio
transport. A countdown with the default settings is a plain message with an ``eta`` header.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from celeriac import Celery
from celeriac.engines.redis.broker import RedisTransport
from celeriac.routing import Exchange, Queue, queue_spec
from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client

pytestmark = pytest.mark.redis


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis_client()
    prefix = key_prefix("bp")
    yield prefix
    delete_prefixed(client, prefix)
    client.close()


def make_app(prefix: str, **settings: Any) -> Celery:
    app = Celery(
        "bp",
        broker=REDIS_URL,
        broker_transport_options={"global_keyprefix": prefix, "poll_interval": 0.05},
        set_as_current=False,
        **settings,
    )

    @app.task(name="bp.add")
    def add(x: int, y: int) -> int:
        return x + y

    return app


class PortalCounter:
    """Counts the sync API's hops to the portal loop."""

    def __init__(self, app: Celery) -> None:
        self.calls = 0
        self._run_sync = app.run_sync

        def counting(coro: Any, timeout: float | None = None) -> Any:
            self.calls += 1
            return self._run_sync(coro, timeout)

        app.run_sync = counting  # type: ignore[method-assign]


async def declare(app: Celery, queue: Queue) -> None:
    transport = RedisTransport(app.broker_url, options=app.conf["broker_transport_options"])
    await transport.connect()
    try:
        await transport.declare([queue_spec(queue)])
    finally:
        await transport.close()


async def fetch_all(app: Celery, queue: str, expected: int) -> list[Any]:
    transport = RedisTransport(app.broker_url, options=app.conf["broker_transport_options"])
    await transport.connect()
    try:
        got: list[Any] = []
        for _ in range(50):
            got += await transport.fetch([queue], limit=100, timeout=0.1)
            if len(got) >= expected:
                break
        await transport.ack(got)
        return got
    finally:
        await transport.close()


def test_delay_publishes_from_the_calling_thread(prefix: str) -> None:
    app = make_app(prefix)
    portal = PortalCounter(app)
    try:
        first = app.tasks["bp.add"].delay(1, 2)  # declares the queue: one portal hop
        assert portal.calls == 1
        ids = [first.id] + [app.tasks["bp.add"].delay(i, i).id for i in range(20)]
        assert portal.calls == 1  # the other 20 never left this thread
        deliveries = asyncio.run(fetch_all(app, "celery", len(ids)))
    finally:
        app.close()
    assert sorted(d.envelope.headers["id"] for d in deliveries) == sorted(ids)
    body = deliveries[0].envelope
    assert body.headers["task"] == "bp.add"
    assert {d.routing_key for d in deliveries} == {"celery"}


def test_countdown_goes_from_the_calling_thread_with_its_eta_header(prefix: str) -> None:
    app = make_app(prefix)
    portal = PortalCounter(app)
    try:
        add = app.tasks["bp.add"]
        add.delay(0, 0)
        hops = portal.calls
        later = add.apply_async((1, 1), countdown=60)
        assert portal.calls == hops  # no delayed set involved: the fast path takes it
        got = asyncio.run(fetch_all(app, "celery", 2))
        [delivery] = [d for d in got if d.envelope.headers["id"] == later.id]
        assert delivery.envelope.headers["eta"] is not None  # on the list, as Celery sends it
    finally:
        app.close()


def test_countdown_and_named_exchanges_fall_back_to_the_transport(prefix: str) -> None:
    app = make_app(prefix, broker_delayed_delivery=True)
    asyncio.run(declare(app, Queue("fanned", Exchange("topical", type="topic"), routing_key="a.#")))
    portal = PortalCounter(app)
    try:
        add = app.tasks["bp.add"]
        add.delay(0, 0)
        hops = portal.calls
        delayed = add.apply_async((1, 1), countdown=0.3)
        assert portal.calls == hops + 1  # the delayed set is the asyncio transport's job
        routed = add.apply_async((2, 2), exchange="topical", routing_key="a.b")
        assert portal.calls >= hops + 2
        got = asyncio.run(fetch_all(app, "fanned", 1))
        assert [d.envelope.headers["id"] for d in got] == [routed.id]
        due = asyncio.run(fetch_all(app, "celery", 2))
        assert delayed.id in {d.envelope.headers["id"] for d in due}
    finally:
        app.close()
