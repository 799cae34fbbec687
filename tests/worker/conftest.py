"""Fixtures that run a real Worker inside the test's event loop."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis

from celeriac import Celery
from celeriac.worker.worker import Worker, WorkerOptions
from tests.worker.apps import app as tasks_app

StartWorker = Callable[..., Awaitable[Worker]]


def _redis_reachable() -> bool:
    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "sqlite", "redis"])
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Celery]:
    """The worker-test app on a fresh memory, SQLite or Redis (own key prefix) store."""
    options: dict[str, object] = {"lease_timeout": 2, "poll_interval": 0.01}
    prefix = f"wt-{uuid.uuid4().hex[:12]}:"
    if request.param == "memory":
        url = f"memory://{uuid.uuid4().hex}"
    elif request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'broker.sqlite'}"
    else:
        if not _redis_reachable():
            if os.environ.get("CI") == "true":
                pytest.fail("Redis at 127.0.0.1:6379 is required when CI=true")
            pytest.skip("Redis at 127.0.0.1:6379 is not reachable")
        url = "redis://127.0.0.1:6379/0"
        options = {"lease_timeout": 2, "global_keyprefix": prefix}
    tasks_app.conf.broker_url = url
    tasks_app.conf.result_backend = url
    tasks_app.conf.broker_transport_options = options
    tasks_app.conf.result_backend_transport_options = {"global_keyprefix": prefix}
    tasks_app._router = None
    yield tasks_app
    if request.param == "redis":
        client = redis.Redis(host="127.0.0.1", port=6379)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)


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
