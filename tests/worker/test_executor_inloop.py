"""InLoopExecutor: coroutine jobs on the running loop, soft limit as an exception, shutdown."""

from __future__ import annotations

import asyncio
import contextvars
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from celeriac.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celeriac.worker.executors import (
    AsyncSoftTimeLimitExceeded,
    ExecutorStopped,
    InLoopExecutor,
    Job,
)

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
seen: list[str] = []  # what jobs observed, checked by the tests


async def _echo(arg: Any) -> Any:
    await asyncio.sleep(0)
    return arg


async def _context(_: object) -> str:
    return request_id.get()


async def _raise(message: str) -> None:
    await asyncio.sleep(0)
    raise ValueError(message)


async def _soft(seconds: float) -> Any:
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded as exc:
        task = asyncio.current_task()
        assert task is not None
        seen.append(f"cancelling={task.cancelling()}")
        await asyncio.sleep(0.01)  # the coroutine can go on awaiting after the soft limit
        try:
            async with asyncio.timeout(0.02):  # and asyncio.timeout still works exactly
                await asyncio.sleep(1)
        except TimeoutError:
            seen.append("timeout-ok")
        return ("soft-caught", isinstance(exc, asyncio.CancelledError))
    return "not-interrupted"


async def _soft_wait_for(_: object) -> str:
    async def inner() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("inner-cancelled")
            raise

    try:
        await asyncio.wait_for(inner(), 5)
    except SoftTimeLimitExceeded:
        return "soft-caught"
    return "not-interrupted"


async def _sleep(seconds: float) -> str:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError as exc:
        seen.append(type(exc).__name__)
        raise
    return "slept"


async def _stubborn(seconds: float) -> str:
    """Swallows cancellation once, then sleeps on: keeps its slot after the hard limit."""
    try:
        await asyncio.sleep(30)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
        seen.append("stubborn-ended")
    return "ignored"


async def _interval(seconds: float) -> tuple[float, float]:
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return (started, time.monotonic())


async def _sys_exit(code: int) -> None:
    sys.exit(code)


COMMANDS: dict[str, Callable[[Any], Coroutine[Any, Any, Any]]] = {
    "echo": _echo,
    "context": _context,
    "raise": _raise,
    "soft": _soft,
    "soft_wait_for": _soft_wait_for,
    "sleep": _sleep,
    "stubborn": _stubborn,
    "interval": _interval,
    "sys_exit": _sys_exit,
}


async def work(payload: tuple[str, Any]) -> Any:
    """The executor's coroutine function: a tiny command language."""
    kind, arg = payload
    return await COMMANDS[kind](arg)


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
async def pool() -> AsyncIterator[InLoopExecutor]:
    seen.clear()
    executor = InLoopExecutor(work, concurrency=2)
    await executor.start()
    yield executor
    await executor.stop(wait=False)


async def test_results_context_and_on_start(pool: InLoopExecutor) -> None:
    started: list[int] = []
    results = await asyncio.gather(*(pool.submit(Job(("echo", i))) for i in range(20)))
    assert results == list(range(20))
    assert await pool.submit(Job(("echo", "x"), on_start=started.append)) == "x"
    assert started == [os.getpid()]
    request_id.set("abc")
    assert await pool.submit(Job(("context", None))) == "abc"


async def test_fn_exceptions_propagate(pool: InLoopExecutor) -> None:
    with pytest.raises(ValueError, match="bad input"):
        await pool.submit(Job(("raise", "bad input")))
    with pytest.raises(RuntimeError, match="SystemExit"):  # must not stop the loop
        await pool.submit(Job(("sys_exit", 3)))
    assert await pool.submit(Job(("echo", 1))) == 1


async def test_soft_limit_is_an_exception_at_the_await_point(pool: InLoopExecutor) -> None:
    result = await pool.submit(Job(("soft", 5), soft_time_limit=0.2))
    assert result == ("soft-caught", True)
    assert seen == ["cancelling=0", "timeout-ok"]
    assert await pool.submit(Job(("soft", 0.01), soft_time_limit=0.2)) == "not-interrupted"


async def test_soft_limit_lets_asyncio_clean_up_like_a_cancellation(pool: InLoopExecutor) -> None:
    assert await pool.submit(Job(("soft_wait_for", None), soft_time_limit=0.2)) == "soft-caught"
    assert seen == ["inner-cancelled"]  # wait_for cancelled its inner task


async def test_soft_limit_escaping_fn_is_a_plain_soft_time_limit(pool: InLoopExecutor) -> None:
    with pytest.raises(SoftTimeLimitExceeded) as info:
        await pool.submit(Job(("sleep", 5), soft_time_limit=0.1))
    assert not isinstance(info.value, asyncio.CancelledError)
    assert seen == [AsyncSoftTimeLimitExceeded.__name__]
    assert await pool.submit(Job(("echo", "after"))) == "after"


async def test_hard_limit_cancels_the_job(pool: InLoopExecutor) -> None:
    other = asyncio.ensure_future(pool.submit(Job(("sleep", 0.5))))
    with pytest.raises(TimeLimitExceeded, match=r"Time limit \(0.2s\) exceeded"):
        await pool.submit(Job(("sleep", 30), time_limit=0.2))
    assert await other == "slept"
    assert seen == ["CancelledError"]


async def test_stubborn_job_keeps_its_slot_until_it_ends() -> None:
    seen.clear()
    executor = InLoopExecutor(work, concurrency=1)
    await executor.start()
    try:
        with pytest.raises(TimeLimitExceeded):
            await executor.submit(Job(("stubborn", 0.3), time_limit=0.1))
        at_start: list[bool] = []
        job = Job(("echo", "next"), on_start=lambda _: at_start.append("stubborn-ended" in seen))
        assert await executor.submit(job) == "next"
        assert at_start == [True]
    finally:
        await executor.stop(wait=True)


async def test_concurrency_is_respected(pool: InLoopExecutor) -> None:
    intervals = await asyncio.gather(*(pool.submit(Job(("interval", 0.05))) for _ in range(6)))
    assert max_overlap(intervals) == 2


async def test_cancelling_submit_cancels_the_job(pool: InLoopExecutor) -> None:
    started: list[int] = []
    job = asyncio.ensure_future(pool.submit(Job(("sleep", 30), on_start=started.append)))
    await wait_until(lambda: bool(started))
    job.cancel()
    await wait_until(lambda: seen == ["CancelledError"])
    results = await asyncio.gather(*(pool.submit(Job(("echo", i))) for i in range(2)))
    assert results == [0, 1]


async def test_stop_wait_true_lets_running_jobs_finish() -> None:
    executor = InLoopExecutor(work, concurrency=2)
    await executor.start()
    started: list[int] = []
    running = asyncio.ensure_future(
        executor.submit(Job(("interval", 0.2), on_start=started.append))
    )
    await wait_until(lambda: bool(started))
    await executor.stop(wait=True)
    stopped_at = time.monotonic()
    _, ended_at = await running
    assert ended_at <= stopped_at
    with pytest.raises(ExecutorStopped):
        await executor.submit(Job(("echo", 1)))


async def test_stop_wait_false_cancels_running_and_fails_queued() -> None:
    seen.clear()
    executor = InLoopExecutor(work, concurrency=2)
    await executor.start()
    started: list[int] = []
    jobs = [
        asyncio.ensure_future(executor.submit(Job(("sleep", 30), on_start=started.append)))
        for _ in range(3)
    ]
    await wait_until(lambda: len(started) == 2)
    await executor.stop(wait=False)
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(outcome, WorkerLostError) for outcome in outcomes)
    assert [isinstance(outcome, ExecutorStopped) for outcome in outcomes] == [False, False, True]
    assert seen == ["CancelledError", "CancelledError"]
