"""Canvases built and sent by the real ``celery`` client complete on a celeriac worker.

Celery publishes to its in-process ``memory://`` broker; every message it sends is
captured (``before_task_publish``) and put, unchanged, on the celeriac worker's
transport. The worker then follows the canvas embedded by Celery: chain links, a
group turned into a chord inside a chain, callbacks and chord bodies.
(Over Redis, with both sides on the same broker, see tests/interop.)
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.protocol.envelope import Envelope
from celeriac.transport import Outgoing
from celeriac.worker.worker import Worker, WorkerOptions
from tests.integration import canvas_apps as t

celery = pytest.importorskip("celery", reason="the real celery package is the peer")
celery_signals = pytest.importorskip("celery.signals")

pytestmark = pytest.mark.interop
WAIT = 20


class CeleryClient:
    """A Celery app with stand-ins for the canvas tasks (same names), recording what it sends."""

    def __init__(self) -> None:
        self.app = celery.Celery(
            "peer", broker="memory://", backend="cache+memory://", set_as_current=False
        )
        self.sent: list[Envelope] = []
        self.t = {
            name: self.app.task(name=getattr(t, name).name)(_stub)
            for name in ("add", "mul", "xsum", "fail", "on_error")
        }

    def record(
        self,
        sender: Any = None,
        body: Any = None,
        headers: Any = None,
        properties: Any = None,
        **_: Any,
    ) -> None:
        props = properties or {}
        envelope = Envelope(
            body=json.dumps(body).encode(),
            headers=dict(headers),
            properties={
                "correlation_id": props.get("correlation_id"),
                "reply_to": props.get("reply_to"),
                "delivery_mode": 2,
                "priority": 0,
            },
        )
        self.sent.append(envelope)


def _stub(*args: Any, **kwargs: Any) -> None:  # never run: the celeriac worker runs the real ones
    raise AssertionError("a Celery stand-in ran")


@pytest.fixture
def peer() -> Iterator[CeleryClient]:
    client = CeleryClient()
    celery_signals.before_task_publish.connect(client.record, weak=False)
    yield client
    celery_signals.before_task_publish.disconnect(client.record)


@pytest.fixture(params=["memory", "sqlite"])
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Celery]:
    url = (
        f"memory://{uuid.uuid4().hex}"
        if request.param == "memory"
        else f"sqlite:///{tmp_path / 'b.sqlite'}"
    )
    capp = t.app
    await asyncio.to_thread(capp.close)
    capp.conf.broker_url = capp.conf.result_backend = url
    capp.conf.broker_transport_options = {"lease_timeout": 2, "poll_interval": 0.01}
    capp._router = None
    worker = Worker(capp, WorkerOptions(concurrency=4, pool="threads", banner=False))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)
    yield capp
    worker.stop()
    await asyncio.wait_for(task, 30)
    await capp.aclose()


async def _deliver(app: Celery, peer: CeleryClient, build: Callable[[CeleryClient], Any]) -> Any:
    result = build(peer)
    transport = await app.aget_transport()
    await transport.publish([Outgoing(envelope, "", "celery") for envelope in peer.sent])
    return result


async def test_celery_chain(app: Celery, peer: CeleryClient) -> None:
    result = await _deliver(
        app,
        peer,
        lambda p: celery.chain(p.t["add"].s(1, 1), p.t["add"].s(10), p.t["mul"].s(2)).apply_async(),
    )
    assert await app.AsyncResult(result.id).aget(timeout=WAIT) == 24
    assert await app.AsyncResult(result.parent.id).aget(timeout=WAIT) == 12


async def test_celery_group_of_chains(app: Celery, peer: CeleryClient) -> None:
    result = await _deliver(
        app,
        peer,
        lambda p: celery.group(
            p.t["add"].s(1, 1) | p.t["mul"].s(2), p.t["add"].s(2, 2)
        ).apply_async(),
    )
    values = [await app.AsyncResult(r.id).aget(timeout=WAIT) for r in result.results]
    assert values == [4, 4]


async def test_celery_chain_with_group_runs_a_chord(app: Celery, peer: CeleryClient) -> None:
    """Celery embeds a ``celery.chord`` signature; the celeriac worker applies it."""
    result = await _deliver(
        app,
        peer,
        lambda p: celery.chain(
            p.t["add"].s(1, 1),
            celery.group(p.t["add"].s(1), p.t["add"].s(2)),
            p.t["xsum"].s(),
            p.t["mul"].s(10),
        ).apply_async(),
    )
    assert await app.AsyncResult(result.id).aget(timeout=WAIT) == 70


async def test_celery_link(app: Celery, peer: CeleryClient) -> None:
    result = await _deliver(
        app, peer, lambda p: p.t["add"].s(2, 2).apply_async(link=p.t["mul"].s(10))
    )
    assert await app.AsyncResult(result.id).aget(timeout=WAIT) == 4
    children = (await app.AsyncResult(result.id).ameta())["children"]
    assert await app.AsyncResult(children[0][0][0]).aget(timeout=WAIT) == 40


async def test_celery_link_error_in_a_chain(app: Celery, peer: CeleryClient) -> None:
    handled = str(uuid.uuid4())
    result = await _deliver(
        app,
        peer,
        lambda p: celery.chain(
            p.t["add"].s(1, 1), p.t["fail"].si("x"), p.t["mul"].s(2)
        ).apply_async(link_error=p.t["on_error"].s().set(task_id=handled)),
    )
    failed_id = result.parent.id
    assert await app.AsyncResult(handled).aget(timeout=WAIT) == f"handled {failed_id}"
    with pytest.raises(ValueError, match="x"):
        await app.AsyncResult(result.id).aget(timeout=WAIT)
