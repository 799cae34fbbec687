"""ThreadExecutor: results, context, soft/hard limits by async exceptions, capacity, shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celeriac.worker.executors import ExecutorStopped, Job, ThreadExecutor, create_executor

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


def _busy(seconds: float) -> str:
    """Pure-Python busy wait in small steps: interruptible at any bytecode boundary."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
    return "done"


def _soft(seconds: float) -> str:
    try:
        _busy(seconds)
    except SoftTimeLimitExceeded:
        return "soft-caught"
    return "not-interrupted"


def _interval(seconds: float) -> tuple[float, float]:
    started = time.monotonic()
    time.sleep(seconds)
    return (started, time.monotonic())


def _raise(message: str) -> None:
    raise ValueError(message)


def _stuck(event: threading.Event) -> None:
    """Blocked in one C call: an async exception cannot land before it returns."""
    try:
        time.sleep(1.5)  # far beyond the 0.2 s hard limit used with it
    finally:
        event.set()


def _sys_exit(code: int) -> None:
    sys.exit(code)


COMMANDS: dict[str, Callable[[Any], Any]] = {
    "echo": lambda arg: arg,
    "ident": lambda _: threading.get_ident(),
    "context": lambda _: request_id.get(),
    "busy": _busy,
    "soft": _soft,
    "interval": _interval,
    "raise": _raise,
    "stuck": _stuck,
    "sys_exit": _sys_exit,
}


def work(payload: tuple[str, Any]) -> Any:
    """The executor's fn: a tiny command language."""
    kind, arg = payload
    return COMMANDS[kind](arg)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals in progress at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return peak


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def pool() -> AsyncIterator[ThreadExecutor]:
    executor = ThreadExecutor(work, concurrency=2)
    await executor.start()
    yield executor
    await executor.stop(wait=False)


async def test_results_context_and_on_start(pool: ThreadExecutor) -> None:
    started: list[int] = []
    results = await asyncio.gather(*(pool.submit(Job(("echo", i))) for i in range(20)))
    assert results == list(range(20))
    ident = await pool.submit(Job(("ident", None), on_start=started.append))
    assert started == [ident] and ident != threading.get_ident()
    request_id.set("abc")
    assert await pool.submit(Job(("context", None))) == "abc"


async def test_fn_exceptions_propagate(pool: ThreadExecutor) -> None:
    with pytest.raises(ValueError, match="bad input"):
        await pool.submit(Job(("raise", "bad input")))
    with pytest.raises(RuntimeError, match="SystemExit"):  # must not stop the worker's loop
        await pool.submit(Job(("sys_exit", 3)))
    assert await pool.submit(Job(("echo", 1))) == 1


async def test_soft_limit_raises_inside_fn_and_does_not_leak(pool: ThreadExecutor) -> None:
    assert await pool.submit(Job(("soft", 5), soft_time_limit=0.3)) == "soft-caught"
    assert await pool.submit(Job(("soft", 0.01), soft_time_limit=0.3)) == "not-interrupted"
    # The earlier job's soft timer must not hit later jobs run by the same threads.
    results = await asyncio.gather(*(pool.submit(Job(("soft", 0.5))) for _ in range(2)))
    assert results == ["not-interrupted", "not-interrupted"]


async def test_hard_limit_raises_and_other_jobs_continue(pool: ThreadExecutor) -> None:
    other = asyncio.ensure_future(pool.submit(Job(("busy", 0.8))))
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded, match=r"Time limit \(0.3s\) exceeded"):
        await pool.submit(Job(("busy", 30), time_limit=0.3))
    assert time.monotonic() - started < 5
    assert await other == "done"
    results = await asyncio.gather(*(pool.submit(Job(("echo", i))) for i in range(4)))
    assert results == [0, 1, 2, 3]


async def test_abandoned_thread_keeps_its_slot_until_it_ends() -> None:
    executor = ThreadExecutor(work, concurrency=1)
    await executor.start()
    try:
        stuck_done = threading.Event()
        with pytest.raises(TimeLimitExceeded):
            await executor.submit(Job(("stuck", stuck_done), time_limit=0.2))
        assert not stuck_done.is_set()  # abandoned, still sleeping
        seen_at_start: list[bool] = []
        job = Job(("echo", "next"), on_start=lambda _: seen_at_start.append(stuck_done.is_set()))
        assert await executor.submit(job) == "next"
        assert seen_at_start == [True]  # the next job waited for the stuck thread to end
    finally:
        await executor.stop(wait=True)


async def test_concurrency_is_respected(pool: ThreadExecutor) -> None:
    intervals = await asyncio.gather(*(pool.submit(Job(("interval", 0.1))) for _ in range(6)))
    assert max_overlap(intervals) == 2


async def test_stop_wait_true_lets_running_jobs_finish() -> None:
    executor = ThreadExecutor(work, concurrency=2)
    await executor.start()
    started: list[int] = []
    job = Job(("interval", 0.4), on_start=started.append)
    running = asyncio.ensure_future(executor.submit(job))
    await wait_until(lambda: bool(started))
    await executor.stop(wait=True)
    stopped_at = time.monotonic()
    _, ended_at = await running
    assert ended_at <= stopped_at  # stop returned only after the job had finished
    with pytest.raises(ExecutorStopped):
        await executor.submit(Job(("echo", 1)))


async def test_stop_wait_false_abandons_running_and_fails_queued() -> None:
    executor = ThreadExecutor(work, concurrency=2)
    await executor.start()
    started: list[int] = []
    jobs = [
        asyncio.ensure_future(executor.submit(Job(("busy", 0.5), on_start=started.append)))
        for _ in range(3)
    ]
    await wait_until(lambda: len(started) == 2)
    await executor.stop(wait=False)
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(outcome, WorkerLostError) for outcome in outcomes)
    assert [isinstance(outcome, ExecutorStopped) for outcome in outcomes] == [False, False, True]
    assert len(started) == 2


async def test_solo_is_one_thread() -> None:
    executor = create_executor("solo", work, concurrency=8)
    assert isinstance(executor, ThreadExecutor) and executor.capacity == 1
    await executor.start()
    try:
        intervals = await asyncio.gather(
            *(executor.submit(Job(("interval", 0.05))) for _ in range(3))
        )
        assert max_overlap(intervals) == 1
    finally:
        await executor.stop(wait=True)


async def test_hard_limit_hook_is_called_once_the_thread_is_abandoned() -> None:
    calls: list[str] = []
    executor = ThreadExecutor(work, concurrency=1, on_hard_limit=lambda: calls.append("hard"))
    await executor.start()
    try:
        assert await executor.submit(Job(("busy", 0.01), time_limit=5)) == "done"
        assert calls == []  # a job within its limit calls nothing
        with pytest.raises(TimeLimitExceeded):
            await executor.submit(Job(("busy", 30), time_limit=0.2))
        assert calls == ["hard"]
    finally:
        await executor.stop(wait=False)


async def test_drop_queued_gives_back_jobs_not_started_and_keeps_the_running_one() -> None:
    executor = ThreadExecutor(work, concurrency=1)
    await executor.start()
    try:
        running = asyncio.ensure_future(executor.submit(Job(("busy", 0.3))))
        queued = [asyncio.ensure_future(executor.submit(Job(("echo", i)))) for i in range(3)]
        await asyncio.sleep(0.05)  # the first job is in its thread, the others wait
        assert executor.drop_queued() == 3
        for job in queued:
            with pytest.raises(ExecutorStopped):
                await job
        assert await running == "done"
        assert await executor.submit(Job(("echo", "after"))) == "after"
    finally:
        await executor.stop(wait=True)
