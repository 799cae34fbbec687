"""AMQPTransport and RPCBackend with the real celery/kombu packages as peers (SPEC §4, §5.4).

Everything runs in the session vhost of the AMQP contract tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac.engines.amqp.broker import AMQPTransport
from celeriac.engines.amqp.results import RPCBackend
from celeriac.protocol.message import TaskMessage, decode_task, encode_task
from celeriac.protocol.results import make_meta
from celeriac.protocol.serializers import JSON
from celeriac.transport.base import Outgoing, QueueSpec
from tests.contract import test_transport_amqp as amqp_fixtures

celery = pytest.importorskip("celery")
kombu = pytest.importorskip("kombu")

pytestmark = [pytest.mark.amqp, pytest.mark.interop]

# Fixtures shared with the AMQP contract tests (session vhost, transport factory).
amqp_url = amqp_fixtures.amqp_url
amqp_vhost = amqp_fixtures.amqp_vhost

APP = """
from celery import Celery
app = Celery("capapp", broker={url!r}, backend="rpc://")
app.conf.update(result_expires=600, worker_hijack_root_logger=False, worker_prefetch_multiplier=1)

@app.task(name="capapp.add")
def add(x, y):
    return x + y
"""


@pytest.fixture
async def transport(amqp_url: str) -> AsyncIterator[AMQPTransport]:
    t = AMQPTransport(amqp_url)
    await t.connect()
    yield t
    await t.close()


@pytest.fixture
async def rpc(amqp_url: str) -> AsyncIterator[RPCBackend]:
    backend = RPCBackend("rpc://", serializer=JSON, expires=600, options={"broker_url": amqp_url})
    await backend.connect()
    yield backend
    await backend.close()


@pytest.fixture
def celery_app(amqp_url: str) -> Iterator[Any]:
    app = celery.Celery("client", broker=amqp_url, backend="rpc://")
    app.conf.update(result_expires=600)
    yield app
    app.close()


@pytest.fixture
def celery_worker(amqp_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Celery worker (solo pool) consuming a fresh queue; yields the queue name."""
    (tmp_path / "capapp.py").write_text(APP.format(url=amqp_url))
    queue = f"to-celery-{uuid.uuid4().hex[:8]}"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "capapp", "worker", "-P", "solo", "-Q", queue,
         "--without-mingle", "--without-gossip", "--without-heartbeat", "-l", "warning"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    yield queue
    worker.send_signal(signal.SIGQUIT)  # cold shutdown: nothing is running by now
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def task(name: str, args: list[Any], reply_to: str, eta: dt.datetime | None = None) -> TaskMessage:
    task_id = str(uuid.uuid4())
    return TaskMessage(
        id=task_id, task=name, args=args, root_id=task_id, reply_to=reply_to, eta=eta
    )


async def test_celery_client_message_is_fetched_and_decodes(
    transport: AMQPTransport, celery_app: Any
) -> None:
    queue = f"from-celery-{uuid.uuid4().hex[:8]}"
    result = await asyncio.to_thread(
        celery_app.send_task, "capapp.add", args=(2, 3), queue=queue, priority=7,
        headers={"x-trace": "abc"}, countdown=0,
    )  # fmt: skip
    [d] = await transport.fetch([queue], limit=1, timeout=10)
    msg = decode_task(d.envelope, {"json"})
    assert (msg.id, msg.task, msg.args) == (result.id, "capapp.add", [2, 3])
    assert msg.headers.get("x-trace") == "abc"
    assert d.envelope.priority == 7 and d.envelope.properties["correlation_id"] == result.id
    assert d.envelope.properties["reply_to"] and (d.exchange, d.routing_key) == ("", queue)
    await transport.ack([d])


async def test_celery_worker_runs_our_messages_and_we_read_rpc_results(
    transport: AMQPTransport, rpc: RPCBackend, celery_worker: str
) -> None:
    queue = celery_worker
    # What a celeriac worker declares for `-Q <queue>` (must not clash with Celery's own).
    await transport.declare([QueueSpec(queue, queue, "direct", queue)])
    now = task("capapp.add", [20, 22], rpc.oid)
    due = time.time() + 1.5
    later = task("capapp.add", [1, 2], rpc.oid, eta=dt.datetime.fromtimestamp(due, dt.UTC))
    await transport.publish(
        [
            Outgoing(encode_task(now), routing_key=queue),
            Outgoing(encode_task(later), routing_key=queue, not_before=due),
        ]
    )
    doc = await rpc.wait(now.id, 60)
    assert doc is not None, "the Celery worker did not answer within 60 s"
    assert (doc["status"], doc["result"], doc["task_id"]) == ("SUCCESS", 42, now.id)
    doc = await rpc.wait(later.id, 30)
    assert doc is not None and doc["result"] == 3
    done = dt.datetime.fromisoformat(doc["date_done"]).timestamp()
    assert done >= due - 0.05  # went down the delay ladder, not run early
    assert await transport.queue_sizes([queue]) == {queue: 0}


async def test_celery_client_reads_our_rpc_result(
    transport: AMQPTransport, rpc: RPCBackend, celery_app: Any
) -> None:
    queue = f"celeriac-side-{uuid.uuid4().hex[:8]}"
    result = await asyncio.to_thread(celery_app.send_task, "capapp.add", args=(4, 5), queue=queue)
    [d] = await transport.fetch([queue], limit=1, timeout=10)
    msg = decode_task(d.envelope, {"json"})
    assert msg.reply_to  # Celery's oid
    await rpc.store_for(msg.reply_to, [(msg.id, make_meta(msg.id, "SUCCESS", 9))])
    await transport.ack([d])
    assert await asyncio.to_thread(result.get, timeout=10) == 9


def _kombu_declare(url: str, queue: str, **kwargs: Any) -> None:
    with kombu.Connection(url) as conn:
        kombu.Queue(queue, kombu.Exchange(queue), queue, **kwargs)(conn.default_channel).declare()


@pytest.mark.parametrize(
    ("kombu_kwargs", "spec_kwargs"),
    [
        ({"max_priority": 10}, {"max_priority": 10}),
        (
            {"queue_arguments": {"x-queue-type": "quorum"}},
            {"queue_arguments": {"x-queue-type": "quorum"}},
        ),
    ],
    ids=["priority", "quorum"],
)
async def test_declarations_match_kombus_both_ways(
    transport: AMQPTransport,
    amqp_url: str,
    kombu_kwargs: dict[str, Any],
    spec_kwargs: dict[str, Any],
) -> None:
    first, second = (f"decl-{uuid.uuid4().hex[:8]}" for _ in range(2))
    await asyncio.to_thread(_kombu_declare, amqp_url, first, **kombu_kwargs)
    await transport.declare([QueueSpec(first, first, "direct", first, **spec_kwargs)])
    await transport.declare([QueueSpec(second, second, "direct", second, **spec_kwargs)])
    await asyncio.to_thread(_kombu_declare, amqp_url, second, **kombu_kwargs)  # no clash


def _kombu_exchange(url: str, name: str, kind: str, durable: bool) -> None:
    with kombu.Connection(url) as conn:
        kombu.Exchange(name, kind, durable=durable)(conn.default_channel).declare()


async def test_exchanges_declared_by_celery_are_reused_as_they_are(
    transport: AMQPTransport, amqp_url: str
) -> None:
    """Celery's pidbox exchange is transient: binding to it must not clash, in either order."""
    before = f"transient-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(_kombu_exchange, amqp_url, before, "fanout", False)
    await transport.declare([QueueSpec(f"{before}.q", before, "fanout")])
    await transport.declare([QueueSpec(f"{uuid.uuid4().hex[:8]}.q", "celery.pidbox", "fanout")])
    await asyncio.to_thread(_kombu_exchange, amqp_url, "celery.pidbox", "fanout", False)
    await transport.publish([Outgoing(encode_task(task("t", [], "")), before, "")])
    assert await transport.queue_sizes([f"{before}.q"]) == {f"{before}.q": 1}
