"""The executor contract shared by all executors, create_executor, and the shared helpers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from celeriac.exceptions import ImproperlyConfigured, WorkerLostError
from celeriac.worker.executors import (
    POOL_NAMES,
    Executor,
    ExecutorStopped,
    InLoopExecutor,
    Job,
    ProcessExecutor,
    ThreadExecutor,
    create_executor,
)
from celeriac.worker.executors.base import JobQueue, PendingJob, Slots, job_error


def double(payload: Any) -> Any:
    if payload == "boom":
        raise KeyError("boom")
    return payload * 2


async def double_async(payload: Any) -> Any:
    await asyncio.sleep(0)
    return double(payload)


def make_processes() -> Executor:
    return ProcessExecutor(double, concurrency=2)


def make_threads() -> Executor:
    return ThreadExecutor(double, concurrency=2)


def make_inloop() -> Executor:
    return InLoopExecutor(double_async, concurrency=2)


FACTORIES: dict[str, Callable[[], Executor]] = {
    "processes": make_processes,
    "threads": make_threads,
    "inloop": make_inloop,
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
async def test_every_executor_honours_the_contract(kind: str) -> None:
    executor = FACTORIES[kind]()
    assert executor.capacity == 2
    with pytest.raises(ExecutorStopped):  # not started yet
        await executor.submit(Job(1))
    await executor.start()
    started: list[int] = []
    try:
        results = await asyncio.gather(
            *(executor.submit(Job(i, on_start=started.append)) for i in range(10))
        )
        assert results == [i * 2 for i in range(10)]
        assert len(started) == 10 and all(isinstance(ident, int) for ident in started)
        with pytest.raises(KeyError, match="boom"):
            await executor.submit(Job("boom"))
        assert await executor.submit(Job(21, time_limit=5, soft_time_limit=4)) == 42
    finally:
        await executor.stop(wait=True)
    await executor.stop(wait=False)  # stopping twice is harmless
    with pytest.raises(ExecutorStopped) as info:
        await executor.submit(Job(1))
    assert isinstance(info.value, WorkerLostError)


@pytest.mark.parametrize(
    ("name", "cls", "capacity"),
    [
        ("prefork", ProcessExecutor, 3),
        ("processes", ProcessExecutor, 3),
        ("threads", ThreadExecutor, 3),
        ("solo", ThreadExecutor, 1),
        (" Prefork ", ProcessExecutor, 3),
    ],
)
def test_create_executor_maps_celery_pool_names(name: str, cls: type, capacity: int) -> None:
    executor = create_executor(name, double, concurrency=3, max_tasks_per_child=5)
    assert isinstance(executor, cls)
    assert executor.capacity == capacity
    assert name.strip().lower() in POOL_NAMES


@pytest.mark.parametrize("name", ["gevent", "eventlet", "nope"])
def test_create_executor_rejects_unknown_pools(name: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=name) as info:
        create_executor(name, double, concurrency=1)
    if name == "nope":
        assert "prefork" in str(info.value)
    else:  # a green pool: the error names what to use instead
        assert "-P threads" in str(info.value) and "async def" in str(info.value)


@pytest.mark.parametrize("factory", [ProcessExecutor, ThreadExecutor])
def test_concurrency_must_be_positive(factory: Callable[..., Executor]) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        factory(double, concurrency=0)


class Outcomes:
    """Records what each entry's ``done`` callback was given."""

    def __init__(self) -> None:
        self.seen: dict[Any, tuple[bool, Any]] = {}

    def entry(self, payload: Any) -> PendingJob:
        def done(ok: bool, value: Any) -> None:
            assert payload not in self.seen, "done called twice"
            self.seen[payload] = (ok, value)

        return PendingJob(Job(payload), done)


def test_job_queue_skips_cancelled_and_fails_the_rest() -> None:
    outcomes = Outcomes()
    queue = JobQueue()
    first, second, third = (outcomes.entry(i) for i in range(3))
    for item in (first, second, third):
        queue.push(item)
    second.cancel()
    assert queue.pop() is first
    queue.push_front(first)
    assert queue.pop() is first
    assert queue.pop() is third
    assert queue.pop() is None
    queue.push(first)
    queue.fail_all()
    ok, error = outcomes.seen[0]
    assert not ok and isinstance(error, ExecutorStopped)
    assert 1 not in outcomes.seen  # a cancelled job is never reported
    assert len(queue) == 0


def test_pending_job_reports_once_and_never_after_cancel() -> None:
    outcomes = Outcomes()
    first, second = outcomes.entry("a"), outcomes.entry("b")
    first.finish(True, 1)
    first.finish(False, ValueError())  # ignored: already reported
    assert outcomes.seen == {"a": (True, 1)}
    cancelled: list[bool] = []
    second.on_cancel = lambda: cancelled.append(True)
    second.cancel()
    second.finish(True, 2)
    assert "b" not in outcomes.seen and cancelled == [True] and not second.waiting


async def test_run_reports_through_the_callback_in_the_loop_thread() -> None:
    for factory in FACTORIES.values():
        executor = factory()
        await executor.start()
        try:
            loop = asyncio.get_running_loop()
            got: asyncio.Future[tuple[bool, Any]] = loop.create_future()
            executor.run(Job(4), lambda ok, value, got=got: got.set_result((ok, value)))
            assert await asyncio.wait_for(got, 10) == (True, 8)
            failed: asyncio.Future[tuple[bool, Any]] = loop.create_future()
            executor.run(Job("boom"), lambda ok, v, failed=failed: failed.set_result((ok, v)))
            ok, error = await asyncio.wait_for(failed, 10)
            assert not ok and isinstance(error, KeyError)
        finally:
            await executor.stop(wait=True)
        refused: list[tuple[bool, Any]] = []
        executor.run(Job(1), lambda ok, value, seen=refused: seen.append((ok, value)))
        assert len(refused) == 1 and isinstance(refused[0][1], ExecutorStopped)


def test_slots_dispatch_in_order_and_bound_running_jobs() -> None:
    outcomes = Outcomes()
    started: list[Any] = []
    refuse = {"refused"}

    def dispatch(item: PendingJob) -> bool:
        if item.job.payload in refuse:
            return False
        started.append(item.job.payload)
        return True

    slots = Slots(2, dispatch)
    items = [outcomes.entry(name) for name in ("a", "refused", "b", "c", "d")]
    for item in items:
        slots.submit(item)
    assert started == ["a", "b"] and slots.free == 0  # a refused dispatch keeps its slot free
    slots.release()
    assert started == ["a", "b", "c"]
    slots.close()
    ok, error = outcomes.seen["d"]
    assert not ok and isinstance(error, ExecutorStopped)
    slots.release()
    assert started == ["a", "b", "c"] and slots.free == 1


def test_job_error_keeps_ordinary_exceptions_and_wraps_the_rest() -> None:
    error = ValueError("x")
    assert job_error(error) is error
    for special in (SystemExit(3), asyncio.CancelledError(), StopIteration(), KeyboardInterrupt()):
        wrapped = job_error(special)
        assert isinstance(wrapped, RuntimeError)
        assert type(special).__name__ in str(wrapped)


async def test_executor_protocol_is_satisfied_statically() -> None:
    # mypy checks these assignments; at run time make sure the methods are coroutines.
    executors: list[Executor] = [make_processes(), make_threads(), make_inloop()]
    for executor in executors:
        methods: list[Callable[..., Awaitable[Any]]] = [
            executor.start,
            executor.submit,
            executor.stop,
        ]
        assert all(asyncio.iscoroutinefunction(method) for method in methods)
        assert not asyncio.iscoroutinefunction(executor.run)
