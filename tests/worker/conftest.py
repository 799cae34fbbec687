"""Fixtures that run a real Worker inside the test's event loop."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from celeriac import Celery
from celeriac.worker.worker import Worker, WorkerOptions
from tests.services import REDIS_URL, delete_prefixed, key_prefix, redis_client
from tests.worker.apps import app as tasks_app

StartWorker = Callable[..., Awaitable[Worker]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Celery]:
    """The worker-test app on a fresh memory, SQLite or Redis (own key prefix) store."""
    options: dict[str, object] = {"lease_timeout": 2, "poll_interval": 0.01}
    prefix = key_prefix("wt")
    client = None
    if request.param == "memory":
        url = f"memory://{uuid.uuid4().hex}"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'broker.sqlite'}"
    else:
        client = redis_client()
        url = REDIS_URL
        options = {"lease_timeout": 2, "global_keyprefix": prefix}
    tasks_app.conf.broker_url = url
    tasks_app.conf.result_backend = url
    tasks_app.conf.broker_transport_options = options
    tasks_app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    tasks_app._router = None
    yield tasks_app
    if client is not None:
        delete_prefixed(client, prefix)
        client.close()


@pytest.fixture
async def start_worker(app: Celery) -> AsyncIterator[StartWorker]:
    """Start workers in this loop; they are stopped (warm) at the end of the test."""
    running: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(**options: object) -> Worker:
        opts = {"concurrency": 2, "pool": "threads", "banner": False, **options}
        worker = Worker(app, WorkerOptions(**opts))  # type: ignore[arg-type]
        task = asyncio.create_task(worker.run())
        running.append((worker, task))
        await asyncio.sleep(0.2)
        if task.done():
            task.result()
        return worker

    yield start
    for worker, task in running:
        worker.stop()
        await asyncio.wait_for(task, 30)
    await app.aclose()
