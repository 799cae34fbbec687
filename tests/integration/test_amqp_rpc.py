"""RPCBackend (rpc://) against RabbitMQ: reply queue, routing by correlation id, reconnects."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from celeriac.engines.amqp.results import RPCBackend, broker_url_for
from celeriac.exceptions import ImproperlyConfigured
from celeriac.protocol.result_codec import result_codec
from celeriac.protocol.results import make_meta
from celeriac.protocol.serializers import JSON, get_serializer
from tests.contract import test_transport_amqp as amqp_fixtures
from tests.services import rabbitmqctl

pytestmark = pytest.mark.amqp

# Fixtures shared with the AMQP contract tests (session vhost, transport factory).
amqp_url = amqp_fixtures.amqp_url
amqp_vhost = amqp_fixtures.amqp_vhost

MakeBackend = Callable[..., Awaitable[RPCBackend]]


@pytest.fixture
async def make_rpc(amqp_url: str) -> AsyncIterator[MakeBackend]:
    """Factory of connected rpc:// backends on the test vhost."""
    made: list[RPCBackend] = []

    async def make(**options: object) -> RPCBackend:
        backend = RPCBackend(
            "rpc://", serializer=JSON, expires=600, options={"broker_url": amqp_url, **options}
        )
        await backend.connect()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


def tid() -> str:
    return str(uuid.uuid4())


async def test_reply_queue_is_declared_like_celerys(make_rpc: MakeBackend, amqp_vhost: str) -> None:
    client = await make_rpc()
    listing = await asyncio.to_thread(
        rabbitmqctl, "list_queues", "-p", amqp_vhost, "name", "durable", "auto_delete", "arguments"
    )
    [line] = [row for row in listing.splitlines() if row.startswith(client.oid)]
    assert "\ttrue\ttrue\t" in line and "x-expires" in line and "600000" in line


async def test_results_are_routed_to_the_sender_by_task_id(make_rpc: MakeBackend) -> None:
    client, worker = await make_rpc(), await make_rpc()
    first, second = tid(), tid()
    waiter = asyncio.create_task(client.wait(first, 10))
    await worker.store_for(client.oid, [(first, make_meta(first, "STARTED", {"pid": 1}))])
    await asyncio.sleep(0.2)
    assert not waiter.done()  # STARTED is not ready
    [started] = await client.get([first])
    assert started is not None and started["status"] == "STARTED"
    await worker.store_for(client.oid, [(second, make_meta(second, "SUCCESS", 2))])
    await worker.store_for(client.oid, [(first, make_meta(first, "SUCCESS", 1))])
    meta = await waiter
    assert meta is not None and (meta["status"], meta["result"]) == ("SUCCESS", 1)
    other = await client.wait(second, 5)  # buffered while nobody waited for it
    assert other is not None and other["result"] == 2
    assert await worker.get([first]) == [None]  # results belong to the sender
    await client.forget([first])
    assert await client.get([first, second]) == [None, other]


async def test_wait_times_out_with_the_latest_state(make_rpc: MakeBackend) -> None:
    client = await make_rpc()
    task_id = tid()
    assert await client.wait(task_id, 0.2) is None
    await client.store_for(client.oid, [(task_id, make_meta(task_id, "RETRY", None))])
    meta = await client.wait(task_id, 1.0)
    assert meta is not None and meta["status"] == "RETRY"


async def test_store_without_reply_to_drops_and_warns(
    make_rpc: MakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend = await make_rpc()
    task_id = tid()
    with caplog.at_level(logging.WARNING, logger="celeriac"):
        await backend.store([(task_id, make_meta(task_id, "SUCCESS", 1))])
    assert any("reply_to" in r.getMessage() for r in caplog.records)
    assert await backend.get([task_id]) == [None]


async def test_chords_and_groups_are_not_supported(make_rpc: MakeBackend) -> None:
    backend = await make_rpc()
    assert backend.supports_chords is False
    with pytest.raises(NotImplementedError, match="chords"):
        await backend.chord_part_done("g", 0, ("t", "SUCCESS", 1), 2)
    with pytest.raises(NotImplementedError):
        await backend.save_group("g", ["t"])
    assert await backend.cleanup() == 0


async def test_reply_queue_comes_back_after_connection_loss(
    make_rpc: MakeBackend, amqp_vhost: str
) -> None:
    client, worker = await make_rpc(), await make_rpc()
    await asyncio.to_thread(rabbitmqctl, "close_all_connections", "-p", amqp_vhost, "test")
    task_id = tid()
    meta = None
    for _ in range(50):  # until the client consumes its (re-declared) reply queue again
        await worker.store_for(client.oid, [(task_id, make_meta(task_id, "SUCCESS", 7))])
        meta = await client.wait(task_id, 0.2)
        if meta is not None:
            break
    assert meta is not None and meta["result"] == 7


def test_broker_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CELERIAC_BROKER_URL", raising=False)
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    assert broker_url_for("rpc://u:p@h:1/v", {}) == "amqp://u:p@h:1/v"
    assert broker_url_for("rpc://", {"broker_url": "amqp://b//"}) == "amqp://b//"
    assert broker_url_for("rpc://", {}).startswith("amqp://guest:guest@localhost")
    monkeypatch.setenv("CELERY_BROKER_URL", "pyamqp://x//")
    assert broker_url_for("rpc://", {}) == "pyamqp://x//"
    with pytest.raises(ImproperlyConfigured):
        broker_url_for("rpc://", {"broker_url": "redis://localhost"})


class _Trap:
    """Unpickling it creates a file: proof that a pickle was decoded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


async def test_a_pickled_reply_is_refused_unless_pickle_is_accepted(
    amqp_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    codec = result_codec({"result_serializer": "json", "accept_content": ["json"]})
    client = RPCBackend("rpc://", serializer=codec, expires=600, options={"broker_url": amqp_url})
    sender = RPCBackend(
        "rpc://", serializer=get_serializer("pickle"), expires=600,
        options={"broker_url": amqp_url},
    )  # fmt: skip
    await client.connect()
    await sender.connect()
    try:
        trap, task_id = tmp_path / "unpickled", tid()
        with caplog.at_level(logging.WARNING):
            meta = make_meta(task_id, "SUCCESS", _Trap(str(trap)))
            await sender.store_for(client.oid, [(task_id, meta)])
            assert await client.wait(task_id, 1.5) is None
        assert not trap.exists()
        assert any("not in accept_content" in r.getMessage() for r in caplog.records)
    finally:
        await client.close()
        await sender.close()
