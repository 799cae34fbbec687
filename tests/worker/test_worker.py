"""The worker end to end on the embedded transports: results, failures, limits, bad input."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import json
import logging
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from celeriac import Celery, signals, states
from celeriac.contrib.abortable import ABORTED, AbortableAsyncResult
from celeriac.exceptions import TimeLimitExceeded
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.message import encode_task
from celeriac.transport import Outgoing
from celeriac.worker.rate_limit import parse_rate
from celeriac.worker.worker import Worker
from tests.worker import apps
from tests.worker.conftest import StartWorker


async def test_success_and_failure(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    ok = await apps.add.adelay(2, 2)
    bad = await apps.fail.adelay("boom")
    assert await ok.aget(timeout=10) == 4
    with pytest.raises(ValueError, match="boom"):
        await bad.aget(timeout=10)
    meta = await bad.ameta()
    assert meta["status"] == states.FAILURE
    assert "ValueError: boom" in meta["traceback"]


async def test_process_pool_runs_tasks_in_children(app: Celery, start_worker: StartWorker) -> None:
    await start_worker(pool="prefork")
    pids = {await (await apps.pid.adelay()).aget(timeout=10) for _ in range(4)}
    assert pids and all(p != __import__("os").getpid() for p in pids)


async def test_async_tasks_run_concurrently(app: Celery, start_worker: StartWorker) -> None:
    await start_worker(concurrency=1)
    started = time.perf_counter()
    results = [await apps.async_sleep.adelay(0.5) for _ in range(20)]
    values = [await r.aget(timeout=10) for r in results]
    assert values == ["slept 0.5"] * 20
    assert time.perf_counter() - started < 5  # 20 x 0.5 s in series would be 10 s


async def test_retry_republishes_with_the_same_id(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    result = await apps.retry_twice.adelay()
    assert await result.aget(timeout=10) == 2


async def test_soft_time_limit_raises_inside_the_task(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker(pool="prefork")
    assert await (await apps.soft_limited.adelay()).aget(timeout=10) == "cleaned up"


async def test_hard_time_limit_kills_only_that_task(app: Celery, start_worker: StartWorker) -> None:
    await start_worker(pool="prefork")
    doomed = await apps.hard_limited.adelay()
    fine = await apps.sleep.adelay(1.0)
    with pytest.raises(TimeLimitExceeded):
        await doomed.aget(timeout=10)
    assert await fine.aget(timeout=10) == 1.0
    assert await (await apps.add.adelay(1, 1)).aget(timeout=10) == 2  # the pool replaced the child


async def test_unserializable_result_is_a_clear_failure(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    result = await apps.unserializable_result.adelay()
    meta = await result.app.AsyncResult(result.id).aget(timeout=10, propagate=False)
    assert "cannot be serialized" in str(meta)


async def test_progress_state_is_visible(app: Celery, start_worker: StartWorker) -> None:
    # memory:// lives in one process, so a pool child could not write to it
    await start_worker(pool="threads" if app.broker_url.startswith("memory") else "prefork")
    result = await apps.progress.adelay()
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline:
        meta = await app.AsyncResult(result.id).ameta()
        if meta["status"] == "PROGRESS":
            seen = meta["result"]
            break
        await asyncio.sleep(0.02)
    assert seen == {"done": 50}
    assert await result.aget(timeout=10) == "finished"


async def test_started_state_is_tracked(app: Celery, start_worker: StartWorker) -> None:
    await start_worker()
    result = await apps.sleep.adelay(1.0)
    deadline = time.monotonic() + 5
    while (await app.AsyncResult(result.id).ameta())["status"] != states.STARTED:
        assert time.monotonic() < deadline, "never saw STARTED"
        await asyncio.sleep(0.02)
    meta = await app.AsyncResult(result.id).ameta()
    assert meta["result"]["hostname"].startswith("celery@")
    await result.aget(timeout=10)


async def test_started_is_written_only_for_tasks_still_running(
    app: Celery, start_worker: StartWorker
) -> None:
    worker = await start_worker()
    assert worker.handler is not None and worker.handler.backend is not None
    written: dict[str, list[str]] = {}
    store = worker.handler.backend.store

    async def recording_store(items: Any) -> None:
        for task_id, meta in items:
            written.setdefault(task_id, []).append(meta["status"])
        await store(items)

    worker.handler.backend.store = recording_store  # type: ignore[method-assign]
    quick = await apps.add.adelay(1, 1)
    assert await quick.aget(timeout=10) == 2
    slow = await apps.sleep.adelay(0.4)
    assert await slow.aget(timeout=10) == 0.4
    assert written[quick.id] == [states.SUCCESS]  # done before STARTED was due
    assert written[slow.id] == [states.STARTED, states.SUCCESS]


async def test_update_state_is_not_overwritten_by_a_late_started(
    app: Celery, start_worker: StartWorker
) -> None:
    # memory:// lives in one process, so a pool child could not write to it
    await start_worker(pool="threads" if app.broker_url.startswith("memory") else "prefork")
    result = await apps.progress.adelay()  # update_state(PROGRESS) at once, then 0.5 s
    deadline = time.monotonic() + 5
    while (await app.AsyncResult(result.id).ameta())["status"] != "PROGRESS":
        assert time.monotonic() < deadline, "never saw PROGRESS"
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # well past the moment STARTED would have been written
    assert (await app.AsyncResult(result.id).ameta())["status"] == "PROGRESS"
    assert await result.aget(timeout=10) == "finished"


async def test_an_abort_is_not_overwritten_by_a_late_started(
    app: Celery, start_worker: StartWorker
) -> None:
    """abort() stored before the task began: the STARTED written 50 ms into the run must
    not replace it, or the task, polling is_aborted(), never sees it."""
    result = await apps.sleep.adelay(0.5)
    await AbortableAsyncResult(result.id, app=app).aabort()
    await start_worker(pool="threads" if app.broker_url.startswith("memory") else "prefork")
    await asyncio.sleep(0.3)  # the task has begun and STARTED was due
    assert (await app.AsyncResult(result.id).ameta())["status"] == ABORTED
    assert await result.aget(timeout=10) == 0.5


async def test_expired_task_is_revoked_without_running(
    app: Celery, start_worker: StartWorker, tmp_path: object
) -> None:
    result = await apps.add.aapply_async(
        (1, 2), expires=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    )
    await start_worker()
    meta = await app.AsyncResult(result.id).aget(timeout=10, propagate=False)
    assert (await app.AsyncResult(result.id).ameta())["status"] == states.REVOKED
    assert meta is not None


async def test_revoke_is_honoured_by_a_worker_started_later(
    app: Celery, start_worker: StartWorker
) -> None:
    result = await apps.add.adelay(5, 5)
    await result.arevoke()
    await start_worker()
    await app.AsyncResult(result.id).aget(timeout=10, propagate=False)
    assert (await app.AsyncResult(result.id).ameta())["status"] == states.REVOKED


async def test_countdown_waits_in_the_broker(app: Celery, start_worker: StartWorker) -> None:
    worker = await start_worker()
    sent = time.time()
    result = await apps.add.aapply_async((3, 4), countdown=1.5)
    assert await result.aget(timeout=10) == 7
    done = (await app.AsyncResult(result.id).ameta())["date_done"]
    assert dt.datetime.fromisoformat(done).timestamp() >= sent + 1.4
    assert worker.handler is not None


async def test_far_eta_from_a_celery_client_goes_back_to_the_broker(
    app: Celery, start_worker: StartWorker
) -> None:
    # A Celery client puts ETA tasks straight on the queue; the worker must not hold them.
    worker = await start_worker()
    request = app.build_request(
        apps.add.name, (1, 1), {}, {"eta": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)}
    )
    transport = await app.aget_transport()
    await transport.publish([Outgoing(encode_task(request.message), "", "celery")])
    await asyncio.sleep(1.0)
    assert worker.held == 0  # nothing held in memory
    sizes = await transport.queue_sizes(["celery"])
    assert sizes["celery"] == 1  # waiting broker-side for its ETA


async def test_far_countdown_from_a_celeriac_client_waits_broker_side_then_runs(
    app: Celery, start_worker: StartWorker
) -> None:
    # The client puts it on the queue with its eta header (as Celery's does); the worker
    # moves it into the broker's delayed store instead of holding it, and runs it when due.
    app.conf.worker_eta_hold_seconds = 0.5
    received: list[str] = []

    def on_received(request: Any, **_: Any) -> None:
        received.append(request.id)

    signals.task_received.connect(on_received)
    try:
        worker = await start_worker()
        result = await apps.add.aapply_async((5, 6), countdown=3)
        eta = time.time() + 3
        await asyncio.sleep(1.0)  # the worker fetched it long ago (poll interval 10 ms)
        assert worker.held == 0  # not in worker memory
        transport = await app.aget_transport()
        assert (await transport.queue_sizes(["celery"]))["celery"] == 1  # in the broker
        assert await result.aget(timeout=15) == 11
        done = (await app.AsyncResult(result.id).ameta())["date_done"]
        assert dt.datetime.fromisoformat(done).timestamp() >= eta - 0.1  # not before its ETA
        assert received == [result.id]  # received once (when due), not once per fetch
    finally:
        signals.task_received.disconnect(on_received)
        app.conf.worker_eta_hold_seconds = 2.0


async def test_eta_goes_on_the_queue_with_its_header_by_default(app: Celery) -> None:
    result = await apps.add.aapply_async((1, 2), countdown=3600)
    transport = await app.aget_transport()
    got = await transport.fetch(["celery"], limit=5, timeout=5)
    assert [d.envelope.headers["id"] for d in got] == [result.id]  # any worker sees it now
    assert got[0].envelope.headers["eta"] is not None
    await transport.ack(got)
    await app.aclose()


async def test_broker_delayed_delivery_keeps_etas_broker_side(app: Celery) -> None:
    app.conf.broker_delayed_delivery = True
    try:
        result = await apps.add.aapply_async((1, 2), countdown=1.5)
        due = time.time() + 1.5
        transport = await app.aget_transport()
        early = await transport.fetch(["celery"], limit=5, timeout=0.3)
        if time.time() < due - 0.2:
            assert early == []  # in the delayed store, not on the queue
        got = early or await transport.fetch(["celery"], limit=5, timeout=10)
        assert [d.envelope.headers["id"] for d in got] == [result.id]
        assert time.time() >= due - 0.1  # handed out only when due
        await transport.ack(got)
    finally:
        app.conf.broker_delayed_delivery = False
        await app.aclose()


@pytest.mark.parametrize(
    ("envelope", "reason"),
    [
        (Envelope(body=b"\xff\xfe garbage", headers={"task": "x", "id": "1"}), "undecodable"),
        (
            Envelope(
                body=json.dumps([[], {}, {}]).encode(), headers={"task": "no.such.task", "id": "2"}
            ),
            "unregistered task",
        ),
        (
            Envelope(
                body=b"<xml/>", headers={"task": "x", "id": "3"}, content_type="application/xml"
            ),
            "accept_content",
        ),
    ],
)
async def test_bad_messages_are_dead_lettered_and_the_worker_keeps_going(
    app: Celery, start_worker: StartWorker, envelope: Envelope, reason: str
) -> None:
    await start_worker()
    transport = await app.aget_transport()
    await transport.publish([Outgoing(envelope, "", "celery")])
    assert await (await apps.add.adelay(1, 2)).aget(timeout=10) == 3
    deadline = time.monotonic() + 5
    while not (dead := await transport.list_dead()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert reason in dead[0].reason
    assert await transport.requeue_dead([dead[0].id]) == 1


async def test_queues_option_consumes_only_those(app: Celery, start_worker: StartWorker) -> None:
    await start_worker(queues=["high_priority"])
    ignored = await apps.add.aapply_async((1, 1), queue="default")
    served = await apps.add.aapply_async((2, 2), queue="high_priority")
    assert await served.aget(timeout=10) == 4
    assert (await app.AsyncResult(ignored.id).ameta())["status"] == states.PENDING


async def test_max_tasks_per_child_recycles_processes(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker(pool="prefork", concurrency=1, max_tasks_per_child=2)
    pids = [await (await apps.pid.adelay()).aget(timeout=10) for _ in range(6)]
    assert len(set(pids)) == 3


async def test_warm_shutdown_finishes_running_tasks(app: Celery, start_worker: StartWorker) -> None:
    worker = await start_worker()
    result = await apps.sleep.adelay(1.0)
    await asyncio.sleep(0.4)
    worker.stop()
    assert await result.aget(timeout=10) == 1.0


async def test_state_dump_logs_the_counters_of_the_window(
    app: Celery, start_worker: StartWorker, caplog: pytest.LogCaptureFixture
) -> None:
    # What SIGUSR1 logs: one running task is held and executing, and nothing is settling.
    worker = await start_worker()
    result = await apps.sleep.adelay(1.0)
    deadline = time.monotonic() + 5
    while worker.handler is None or worker.handler.executing != 1:
        assert time.monotonic() < deadline, "the task never started"
        await asyncio.sleep(0.01)
    with caplog.at_level(logging.WARNING, logger="celeriac.worker"):
        worker._log_state()
    assert "held 1, executing 1, settling 0, writes queued" in caplog.text
    assert await result.aget(timeout=10) == 1.0


async def test_task_id_and_headers_reach_the_request(
    app: Celery, start_worker: StartWorker
) -> None:
    await start_worker()
    task_id = str(uuid.uuid4())
    result = await apps.add.aapply_async((1, 2), task_id=task_id, headers={"x-trace": "abc"})
    assert result.id == task_id
    assert await result.aget(timeout=10) == 3


async def test_rate_limit_spaces_tasks_out(app: Celery, start_worker: StartWorker) -> None:
    await start_worker(concurrency=4)
    results = [await apps.limited.adelay(i) for i in range(6)]
    times = sorted([await r.aget(timeout=20) for r in results])
    assert times[-1] - times[0] >= 0.9  # 6 tasks at 5/s span at least a second


def test_parse_rate() -> None:
    assert parse_rate("10/s") == 10
    assert parse_rate("120/m") == 2
    assert parse_rate(None) is None
    with pytest.raises(Exception, match="invalid rate limit"):
        parse_rate("ten per second")


async def test_slow_result_writes_hold_fetching_back_and_then_let_it_go_on(
    app: Celery, start_worker: StartWorker
) -> None:
    # Every result write is slow, so finished tasks' writes pile up beyond a prefetch
    # window: the consumer must stop fetching meanwhile, and fetch again once they shrink.
    worker = await start_worker(concurrency=1, prefetch_multiplier=1, async_concurrency=2)
    assert worker.handler is not None and worker.handler.backend is not None
    store = worker.handler.backend.store
    most_queued = 0

    async def slow_store(items: Any) -> None:
        nonlocal most_queued
        assert worker.handler is not None
        await asyncio.sleep(0.05)
        most_queued = max(most_queued, worker.handler.settler.queued)
        await store(items)

    worker.handler.backend.store = slow_store  # type: ignore[method-assign]
    results = await asyncio.gather(*(apps.async_sleep.adelay(0) for _ in range(60)))
    values = [await result.aget(timeout=20) for result in results]
    assert values == ["slept 0"] * 60
    assert most_queued > worker.prefetch_limit  # the backlog did build up


@pytest.mark.parametrize("pool", ["threads", "prefork"])
async def test_a_finished_task_leaves_no_cyclic_garbage(
    app: Celery, start_worker: StartWorker, pool: str
) -> None:
    """What the worker kept for a task (flight, job, its asyncio task) is freed by reference
    counting once it ends: left to the cyclic collector, its scans cost a busy worker a
    large share of its CPU. Sync and ``async def`` tasks alike."""
    await start_worker(pool=pool)
    assert await (await apps.add.adelay(1, 1)).aget(timeout=10) == 2  # warm
    gc.collect()
    gc.disable()
    try:
        results = [await apps.add.adelay(i, i) for i in range(5)]
        results += [await apps.async_sleep.adelay(0) for _ in range(5)]
        for result in results:
            await result.aget(timeout=10)
        await asyncio.sleep(0.2)  # the last acks are written
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        kinds = {type(obj).__name__ for obj in gc.garbage}
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not kinds & {"Flight", "PendingJob", "Job", "_Run", "TaskMessage", "Delivery"}


async def test_a_revoke_made_while_the_store_is_read_is_kept() -> None:
    """The periodic read of the persisted revokes must not forget a revoke that remote
    control added while the read was in flight."""

    class SlowStore:
        async def revoked(self) -> set[str]:
            config.revoked.add("added-meanwhile")  # remote control, during the read
            return {"stored"}

    config = SimpleNamespace(revoked={"old"})
    worker = Worker.__new__(Worker)
    worker.transport = SlowStore()  # type: ignore[assignment]
    worker.handler = SimpleNamespace(config=config)  # type: ignore[assignment]
    await worker._load_revoked()
    assert config.revoked == {"stored", "added-meanwhile"}  # "old" expired from the store
