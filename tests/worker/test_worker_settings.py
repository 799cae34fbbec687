"""Settings the worker honours: acknowledgement of failures and timeouts, errors of ignored
results, ``task_annotations`` and ``task_create_missing_queues``, with a real worker in the
test's loop on a memory broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from celeriac import Celery
from celeriac.exceptions import QueueNotFound, TimeLimitExceeded
from celeriac.worker.worker import Worker, WorkerOptions

failures: list[tuple[str, str]] = []


def record_failure(self: Any, exc: BaseException, task_id: str, *_: Any) -> None:
    failures.append((self.name, str(exc)))


class Tasks:
    """A fresh app per test (annotations are applied once per app) and its tasks."""

    def __init__(self) -> None:
        self.app = app = Celery("wset", set_as_current=False)

        @app.task(name="wset.fail")
        def fail(message: str) -> None:
            raise ValueError(message)

        @app.task(name="wset.ignored_fail", ignore_result=True)
        def ignored_fail() -> None:
            raise KeyError("kept anyway")

        @app.task(name="wset.slow_once", time_limit=0.5)
        def slow_once(marker: str) -> str:
            path = Path(marker)
            if not path.exists():
                path.write_text("ran")
                time.sleep(10)
            return "second run"

        @app.task(name="wset.add")
        def add(x: int, y: int) -> int:
            return x + y

        self.fail, self.ignored_fail, self.slow_once, self.add = fail, ignored_fail, slow_once, add


Calls = dict[str, list[Any]]


@pytest.fixture
def tasks() -> Tasks:
    return Tasks()


@pytest.fixture
async def start(tasks: Tasks, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Callable[..., Any]]:
    """Start a worker with these settings; its transport's acks and rejects are recorded."""
    url = f"memory://{uuid.uuid4().hex}"
    running: list[tuple[Worker, asyncio.Task[None]]] = []
    app = tasks.app

    async def start_worker(pool: str = "threads", **settings: Any) -> Calls:
        app.conf.update(broker_url=url, result_backend=url, **settings)
        worker = Worker(app, WorkerOptions(concurrency=2, pool=pool, banner=False))
        task = asyncio.create_task(worker.run())
        running.append((worker, task))
        while worker.handler is None and not task.done():
            await asyncio.sleep(0.05)
        if task.done():
            task.result()
        calls: Calls = {"ack": [], "reject": []}
        transport = worker.transport
        assert transport is not None
        ack, reject = transport.ack, transport.reject

        async def recording_ack(deliveries: Any) -> None:
            calls["ack"].extend(deliveries)
            await ack(deliveries)

        async def recording_reject(deliveries: Any, *, requeue: bool) -> None:
            calls["reject"].extend((d, requeue) for d in deliveries)
            await reject(deliveries, requeue=requeue)

        monkeypatch.setattr(transport, "ack", recording_ack)
        monkeypatch.setattr(transport, "reject", recording_reject)
        return calls

    yield start_worker
    for worker, task in running:
        worker.stop()
        await asyncio.wait_for(task, 30)
    await app.aclose()


async def _settled(calls: Calls, count: int) -> None:
    for _ in range(100):
        if len(calls["ack"]) + len(calls["reject"]) >= count:
            return
        await asyncio.sleep(0.05)


async def test_a_failure_is_acked_by_default_and_rejected_without_requeue_if_asked(
    start: Callable[..., Any], tasks: Tasks
) -> None:
    calls = await start(task_acks_on_failure=False)
    result = await tasks.fail.adelay("boom")
    with pytest.raises(ValueError, match="boom"):
        await result.aget(timeout=10)
    await _settled(calls, 1)
    assert calls["ack"] == [] and [requeue for _, requeue in calls["reject"]] == [False]


async def test_the_task_attribute_wins_over_the_setting(
    start: Callable[..., Any], tasks: Tasks
) -> None:
    calls = await start(task_acks_on_failure=False, task_annotations={
        "wset.fail": {"acks_on_failure": True}
    })  # fmt: skip
    with pytest.raises(ValueError):
        await (await tasks.fail.adelay("acked")).aget(timeout=10)
    await _settled(calls, 1)
    assert len(calls["ack"]) == 1 and calls["reject"] == []


async def test_a_timed_out_task_is_requeued_when_timeouts_are_not_acked(
    start: Callable[..., Any], tasks: Tasks, tmp_path: Path
) -> None:
    await start(pool="prefork", task_acks_on_timeout=False)
    result = await tasks.slow_once.adelay(str(tmp_path / "marker"))
    backend = await tasks.app.aget_backend()
    doc = None
    for _ in range(200):  # FAILURE is recorded first (as Celery does), then it runs again
        (doc,) = await backend.get([result.id])
        if doc is not None and doc["status"] == "SUCCESS":
            break
        await asyncio.sleep(0.1)
    assert doc is not None and doc["result"] == "second run"
    assert (tmp_path / "marker").exists()  # the first run timed out


async def test_a_timed_out_task_fails_when_timeouts_are_acked(
    start: Callable[..., Any], tasks: Tasks, tmp_path: Path
) -> None:
    await start(pool="prefork")
    with pytest.raises(TimeLimitExceeded):
        await (await tasks.slow_once.adelay(str(tmp_path / "marker"))).aget(timeout=20)


async def test_errors_of_ignored_results_are_stored_when_asked(
    start: Callable[..., Any], tasks: Tasks
) -> None:
    await start(task_store_errors_even_if_ignored=True)
    result = await tasks.ignored_fail.adelay()
    with pytest.raises(KeyError, match="kept anyway"):
        await result.aget(timeout=10)


async def test_annotations_reach_the_worker(start: Callable[..., Any], tasks: Tasks) -> None:
    failures.clear()
    await start(task_annotations={"*": {"on_failure": record_failure}})
    with pytest.raises(ValueError):
        await (await tasks.fail.adelay("annotated")).aget(timeout=10)
    assert failures == [("wset.fail", "annotated")]
    assert await (await tasks.add.adelay(2, 2)).aget(timeout=10) == 4


async def test_a_worker_refuses_queues_missing_from_task_queues(tasks: Tasks) -> None:
    app = tasks.app
    app.conf.update(broker_url=f"memory://{uuid.uuid4().hex}", task_create_missing_queues=False)
    with pytest.raises(QueueNotFound, match="'elsewhere' missing"):
        Worker(app, WorkerOptions(queues=["elsewhere"], banner=False))
    assert Worker(app, WorkerOptions(banner=False)).queues[0].name == "celery"
