"""Redis transport and backend against the real celery/kombu packages as peers.

Uses the test Redis server with a unique ``global_keyprefix`` (which Celery and
kombu honour too), so nothing here touches other users' keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac.engines.redis.broker import RedisTransport
from celeriac.engines.redis.results import RedisBackend
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.serializers import JSON
from celeriac.transport.base import Outgoing
from tests.contract.test_transport_redis import REDIS_URL, delete_prefixed, redis_or_skip

celery = pytest.importorskip("celery")
kombu = pytest.importorskip("kombu")

pytestmark = [pytest.mark.redis, pytest.mark.interop]

APP = """
from celery import Celery
PREFIX = {prefix!r}
app = Celery("capapp", broker={url!r}, backend={url!r})
app.conf.update(
    broker_transport_options={{"global_keyprefix": PREFIX}},
    result_backend_transport_options={{"global_keyprefix": PREFIX}},
    result_expires=600,
    worker_hijack_root_logger=False,
)

@app.task(name="capapp.add")
def add(x, y):
    return x + y
"""


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    raw = await redis_or_skip()
    value = f"test-{uuid.uuid4().hex[:12]}:"
    yield value
    await delete_prefixed(raw, value)
    await raw.aclose()


@pytest.fixture
def celery_app(prefix: str) -> Iterator[Any]:
    app = celery.Celery("client", broker=REDIS_URL, backend=REDIS_URL)
    app.conf.update(
        broker_transport_options={"global_keyprefix": prefix, "visibility_timeout": 1},
        result_backend_transport_options={"global_keyprefix": prefix},
    )
    yield app
    app.close()


def task_message(task_id: str, args: list[Any]) -> Envelope:
    """A protocol-2 task message built by hand from SPEC §2 (independent of our encoder)."""
    headers = {
        "lang": "py", "task": "capapp.add", "id": task_id, "shadow": None, "eta": None,
        "expires": None, "group": None, "group_index": None, "retries": 0,
        "timelimit": [None, None], "root_id": task_id, "parent_id": None,
        "argsrepr": repr(tuple(args)), "kwargsrepr": "{}", "origin": "celeriac@test",
        "ignore_result": False, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
    }  # fmt: skip
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([args, {}, embed]).encode()
    properties = {"correlation_id": task_id, "reply_to": str(uuid.uuid4()), "delivery_mode": 2}
    return Envelope(body=body, headers=headers, properties=properties)


async def _transport(prefix: str, **options: Any) -> RedisTransport:
    transport = RedisTransport(REDIS_URL, options={"global_keyprefix": prefix, **options})
    await transport.connect()
    return transport


async def test_celery_client_message_is_fetched(prefix: str, celery_app: Any) -> None:
    queue = "from-celery"
    transport = await _transport(prefix)
    try:
        result = await asyncio.to_thread(
            celery_app.send_task, "capapp.add", args=(2, 3), queue=queue, priority=7
        )
        [d] = await transport.fetch([queue], limit=1, timeout=10)
        assert d.envelope.headers["task"] == "capapp.add"
        assert d.envelope.headers["id"] == result.id
        assert json.loads(d.envelope.body)[0] == [2, 3]
        assert d.envelope.priority == 7
        assert d.envelope.properties["correlation_id"] == result.id
        await transport.ack([d])
    finally:
        await transport.close()


async def test_celery_worker_runs_our_message_and_we_read_its_result(
    prefix: str, tmp_path: Path
) -> None:
    (tmp_path / "capapp.py").write_text(APP.format(prefix=prefix, url=REDIS_URL))
    queue = "to-celery"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "capapp", "worker", "-P", "solo", "-Q", queue,
         "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "warning"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    transport = await _transport(prefix)
    backend = RedisBackend(
        REDIS_URL, serializer=JSON, expires=600, options={"global_keyprefix": prefix}
    )
    await backend.connect()
    try:
        task_id = str(uuid.uuid4())
        waiter = asyncio.create_task(backend.wait(task_id, 60))
        await transport.publish([Outgoing(task_message(task_id, [20, 22]), routing_key=queue)])
        doc = await waiter
        assert doc is not None, "the Celery worker did not answer within 60 s"
        assert (doc["status"], doc["result"], doc["task_id"]) == ("SUCCESS", 42, task_id)
        assert await transport.queue_sizes([queue]) == {queue: 0}
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        await transport.close()
        await backend.close()


async def test_celery_client_reads_our_result(prefix: str, celery_app: Any) -> None:
    backend = RedisBackend(
        REDIS_URL, serializer=JSON, expires=600, options={"global_keyprefix": prefix}
    )
    await backend.connect()
    try:
        task_id = str(uuid.uuid4())
        meta = {"status": "SUCCESS", "result": {"n": 5}, "traceback": None, "children": [],
                "date_done": "2026-01-02T03:04:05+00:00", "task_id": task_id}  # fmt: skip
        await backend.store([(task_id, meta)])
        value = await asyncio.to_thread(celery_app.AsyncResult(task_id).get, timeout=10)
        assert value == {"n": 5}
        await backend.save_group("g-" + task_id, [task_id])
        group = await asyncio.to_thread(celery_app.GroupResult.restore, "g-" + task_id)
        assert [r.id for r in group.results] == [task_id]
    finally:
        await backend.close()


def _kombu_restore(prefix: str, queue: str) -> None:
    """What a Celery worker's visibility sweep does (visibility_timeout = 1 s)."""
    options = {"global_keyprefix": prefix, "visibility_timeout": 1}
    with kombu.Connection(REDIS_URL, transport_options=options) as conn:
        channel = conn.default_channel
        channel.qos.restore_visible(num=100, interval=1)


async def test_celery_sweep_restores_abandoned_but_not_live_deliveries(prefix: str) -> None:
    queue = "shared-with-celery"
    live = await _transport(prefix, lease_timeout=0.9)
    abandoned = await _transport(prefix, lease_timeout=60)
    try:
        await live.publish([Outgoing(Envelope(b"live"), routing_key=queue)])
        [held] = await live.fetch([queue], limit=1, timeout=5)
        await live.publish([Outgoing(Envelope(b"abandoned"), routing_key=queue)])
        [lost] = await abandoned.fetch([queue], limit=1, timeout=5)
        await abandoned.leases.stop_heartbeat()  # a consumer gone silent (lease still 60 s)
        await asyncio.sleep(2.0)  # older than the Celery visibility timeout
        await asyncio.to_thread(_kombu_restore, prefix, queue)
        other = await _transport(prefix)
        back = await other.fetch([queue], limit=5, timeout=5)
        assert [d.envelope.body for d in back] == [b"abandoned"]
        assert back[0].redelivered and back[0].envelope == lost.envelope
        await other.ack(back)
        await live.ack([held])
        await other.close()
    finally:
        await live.close()
        await abandoned.close()


async def test_kombu_consumer_reads_our_message(prefix: str) -> None:
    queue = "to-kombu"
    transport = await _transport(prefix)
    try:
        env = task_message(str(uuid.uuid4()), [1, 2])
        env.properties["priority"] = 3
        await transport.publish([Outgoing(env, routing_key=queue)])

        def consume() -> tuple[Any, dict[str, Any], dict[str, Any], int]:
            options = {"global_keyprefix": prefix}
            with kombu.Connection(REDIS_URL, transport_options=options) as conn:
                simple = conn.SimpleQueue(queue)
                message = simple.get(timeout=5)
                message.ack()
                payload = message.decode()
                info = dict(message.delivery_info)
                headers = dict(message.headers)
                priority = message.properties.get("priority")
                simple.close()
                return payload, headers, info, priority

        payload, headers, info, priority = await asyncio.to_thread(consume)
        assert payload[0] == [1, 2]
        assert headers["task"] == "capapp.add"
        assert info["routing_key"] == queue
        assert priority == 3
        # kombu's ack removed its own unacked entry: nothing left behind.
        assert await transport.queue_sizes([queue]) == {queue: 0}
    finally:
        await transport.close()
