"""ProcessExecutor against real forked children: results, errors, limits, deaths, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from celeriac.exceptions import (
    SerializationError,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from celeriac.worker.executors import ExecutorStopped, Job, ProcessExecutor
from celeriac.worker.executors.processes import send_note

_init_mark: int | None = None  # set by the initializer, in the child


class PickyError(Exception):
    """Pickles but cannot be unpickled (its __init__ needs two arguments)."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def _interval(seconds: float) -> tuple[float, float]:
    started = time.monotonic()  # CLOCK_MONOTONIC is system-wide: comparable across processes
    time.sleep(seconds)
    return (started, time.monotonic())


def _raise(message: str) -> None:
    raise ValueError(message)


def _raise_picky(_: object) -> None:
    raise PickyError("x", "y")


def _soft(seconds: float) -> str:
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "soft-caught"
    return "not-interrupted"


def _signal_self(signum: int) -> str:
    os.kill(os.getpid(), signum)
    time.sleep(0.2)
    return "survived"


def _sys_exit(code: int) -> None:
    sys.exit(code)


def _notes(count: int) -> str:
    for i in range(count):
        send_note(("note", i, os.getpid()))
    return "noted"


COMMANDS: dict[str, Callable[[Any], Any]] = {
    "echo": lambda arg: arg,
    "pid": lambda _: os.getpid(),
    "sleep": _sleep,
    "interval": _interval,
    "raise": _raise,
    "raise_picky": _raise_picky,
    "unpicklable_result": lambda _: lambda: None,
    "soft": _soft,
    "exit": os._exit,
    "signal_self": _signal_self,
    "sys_exit": _sys_exit,
    "asyncio": lambda arg: asyncio.run(asyncio.sleep(0, result=arg)),
    "init_mark": lambda _: (_init_mark, os.getpid()),
    "notes": _notes,
}


def work(payload: tuple[str, Any]) -> Any:
    """The executor's fn: a tiny command language so tests can make children misbehave."""
    kind, arg = payload
    return COMMANDS[kind](arg)


def mark_init() -> None:
    global _init_mark
    _init_mark = os.getpid()


def fail_init() -> None:
    raise RuntimeError("initializer exploded")


def assert_reaped(pids: list[int]) -> None:
    """Every pid is gone: not our child any more (reaped) and not a zombie in /proc."""
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        try:
            with open(f"/proc/{pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            continue
        assert state != "Z", f"pid {pid} is a zombie"


def assert_no_zombie_children() -> None:
    """No child of this process is left unreaped."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        state, ppid = fields[0], int(fields[1])
        assert not (ppid == os.getpid() and state == "Z"), f"zombie child {entry}"


class Recorder:
    """Builds jobs whose on_start callback records the pid that started each one."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def job(self, payload: Any, **kwargs: Any) -> Job:
        return Job(payload, on_start=self.pids.append, **kwargs)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def pool() -> AsyncIterator[ProcessExecutor]:
    executor = ProcessExecutor(work, concurrency=2)
    await executor.start()
    seen = set(executor.pids)
    yield executor
    seen.update(executor.pids)
    await executor.stop(wait=False)
    assert_reaped(sorted(seen))
    assert_no_zombie_children()


async def test_results_come_back_from_two_children(pool: ProcessExecutor) -> None:
    recorder = Recorder()
    assert pool.capacity == 2
    results = await asyncio.gather(*(pool.submit(recorder.job(("echo", i))) for i in range(20)))
    assert results == list(range(20))
    assert set(recorder.pids) <= set(pool.pids)
    pid = await pool.submit(recorder.job(("pid", None)))
    assert pid == recorder.pids[-1] and pid != os.getpid()


async def test_fn_exceptions_propagate(pool: ProcessExecutor) -> None:
    with pytest.raises(ValueError, match="bad input") as info:
        await pool.submit(Job(("raise", "bad input")))
    assert any("Traceback" in note for note in getattr(info.value, "__notes__", []))
    with pytest.raises(RuntimeError, match="PickyError: x/y"):
        await pool.submit(Job(("raise_picky", None)))
    with pytest.raises(SerializationError, match="cannot pickle the result"):
        await pool.submit(Job(("unpicklable_result", None)))
    with pytest.raises(SerializationError, match="payload"):  # refused before reaching a child
        await pool.submit(Job(("echo", lambda: None)))
    assert await pool.submit(Job(("echo", "still fine"))) == "still fine"


async def test_soft_limit_raises_inside_fn_and_is_cleared_after(pool: ProcessExecutor) -> None:
    assert await pool.submit(Job(("soft", 5), soft_time_limit=0.3)) == "soft-caught"
    # A job that finishes under its soft limit must not leave the alarm armed.
    assert await pool.submit(Job(("soft", 0.01), soft_time_limit=0.3)) == "not-interrupted"
    results = await asyncio.gather(*(pool.submit(Job(("soft", 0.6))) for _ in range(2)))
    assert results == ["not-interrupted", "not-interrupted"]


async def test_soft_limit_alarm_does_not_wake_the_parent_loop(pool: ProcessExecutor) -> None:
    # With a loop signal handler installed, the loop's wakeup fd is inherited by children;
    # a child's SIGALRM must not be reported to the parent through it.
    parent_alarms: list[int] = []
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGALRM, parent_alarms.append, 1)
    try:
        fresh = ProcessExecutor(work, concurrency=1)
        await fresh.start()
        try:
            assert await fresh.submit(Job(("soft", 5), soft_time_limit=0.2)) == "soft-caught"
            await asyncio.sleep(0.1)
        finally:
            await fresh.stop(wait=True)
    finally:
        loop.remove_signal_handler(signal.SIGALRM)
    assert parent_alarms == []


async def test_hard_limit_kills_only_that_child(pool: ProcessExecutor) -> None:
    recorder = Recorder()
    slow = asyncio.ensure_future(pool.submit(recorder.job(("sleep", 1.0))))
    await wait_until(lambda: len(recorder.pids) == 1)
    with pytest.raises(TimeLimitExceeded, match=r"Time limit \(0.5s\) exceeded"):
        await pool.submit(recorder.job(("sleep", 30), time_limit=0.5))
    slow_pid, killed_pid = recorder.pids
    assert await slow == "slept"
    await wait_until(lambda: len(pool.pids) == 2 and killed_pid not in pool.pids)
    assert slow_pid in pool.pids
    assert_reaped([killed_pid])
    after = await asyncio.gather(*(pool.submit(Job(("echo", i))) for i in range(4)))
    assert after == [0, 1, 2, 3]


async def test_child_death_raises_worker_lost_and_pool_recovers(pool: ProcessExecutor) -> None:
    with pytest.raises(WorkerLostError, match="exitcode 3"):
        await pool.submit(Job(("exit", 3)))
    with pytest.raises(WorkerLostError, match=r"signal 9 \(SIGKILL\)"):
        await pool.submit(Job(("signal_self", signal.SIGKILL)))
    with pytest.raises(WorkerLostError, match="exitcode 4"):
        await pool.submit(Job(("sys_exit", 4)))
    assert await pool.submit(Job(("echo", "ok"))) == "ok"
    await wait_until(lambda: len(pool.pids) == 2)


async def test_children_ignore_sigint_and_die_on_sigterm(pool: ProcessExecutor) -> None:
    assert await pool.submit(Job(("signal_self", signal.SIGINT))) == "survived"
    victim = pool.pids[0]
    os.kill(victim, signal.SIGTERM)  # an idle child dies and is replaced
    await wait_until(lambda: victim not in pool.pids and len(pool.pids) == 2)
    assert_reaped([victim])
    pids = await asyncio.gather(*(pool.submit(Job(("pid", None))) for _ in range(4)))
    assert victim not in pids


async def test_max_tasks_per_child_recycles_children() -> None:
    executor = ProcessExecutor(work, concurrency=2, max_tasks_per_child=2, initializer=mark_init)
    await executor.start()
    recorder = Recorder()
    seen: set[int] = set(executor.pids)
    try:
        sequential = [await executor.submit(recorder.job(("echo", i))) for i in range(6)]
        parallel = await asyncio.gather(
            *(executor.submit(recorder.job(("echo", i))) for i in range(10))
        )
        marks = [await executor.submit(Job(("init_mark", None))) for _ in range(3)]
        seen.update(recorder.pids, executor.pids)
    finally:
        await executor.stop(wait=True)
    assert sequential == list(range(6))
    assert parallel == list(range(10))
    assert all(mark == pid for mark, pid in marks)  # each new child ran the initializer
    counts = {pid: recorder.pids.count(pid) for pid in set(recorder.pids)}
    assert max(counts.values()) <= 2 and len(counts) >= 8
    assert_reaped(sorted(seen))


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals in progress at one instant."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in events:  # at equal times, ends (-1) sort before starts
        running += delta
        peak = max(peak, running)
    return peak


async def test_concurrency_is_respected(pool: ProcessExecutor) -> None:
    intervals = await asyncio.gather(*(pool.submit(Job(("interval", 0.1))) for _ in range(6)))
    assert max_overlap(intervals) == 2


async def test_cancelled_submit_keeps_the_pool_whole(pool: ProcessExecutor) -> None:
    recorder = Recorder()
    job = asyncio.ensure_future(pool.submit(recorder.job(("sleep", 0.3))))
    await wait_until(lambda: len(recorder.pids) == 1)
    job.cancel()
    queued = [asyncio.ensure_future(pool.submit(Job(("echo", i)))) for i in range(3)]
    queued[1].cancel()
    assert await queued[0] == 0 and await queued[2] == 2
    results = await asyncio.gather(*(pool.submit(Job(("sleep", 0.1))) for _ in range(2)))
    assert results == ["slept", "slept"]
    assert len(pool.pids) == 2


async def test_fn_can_use_asyncio_in_the_child(pool: ProcessExecutor) -> None:
    assert await pool.submit(Job(("asyncio", 42))) == 42


async def test_stop_wait_true_lets_running_jobs_finish() -> None:
    executor = ProcessExecutor(work, concurrency=2)
    await executor.start()
    pids = executor.pids
    recorder = Recorder()
    running = asyncio.ensure_future(executor.submit(recorder.job(("interval", 0.5))))
    await wait_until(lambda: len(recorder.pids) == 1)
    await executor.stop(wait=True)
    stopped_at = time.monotonic()
    _, ended_at = await running
    assert ended_at <= stopped_at  # stop returned only after the job had finished
    assert executor.pids == []
    assert_reaped(pids)
    with pytest.raises(ExecutorStopped):
        await executor.submit(Job(("echo", 1)))


async def test_stop_wait_false_kills_running_and_fails_queued() -> None:
    executor = ProcessExecutor(work, concurrency=2)
    await executor.start()
    pids = executor.pids
    recorder = Recorder()
    jobs = [asyncio.ensure_future(executor.submit(recorder.job(("sleep", 30)))) for _ in range(3)]
    await wait_until(lambda: len(recorder.pids) == 2)
    started = time.monotonic()
    await executor.stop(wait=False)
    assert time.monotonic() - started < 10
    outcomes = await asyncio.gather(*jobs, return_exceptions=True)
    assert all(isinstance(outcome, WorkerLostError) for outcome in outcomes)
    assert [isinstance(outcome, ExecutorStopped) for outcome in outcomes] == [False, False, True]
    assert_reaped(pids)


async def test_failing_initializer_fails_start_without_leftovers() -> None:
    executor = ProcessExecutor(work, concurrency=2, initializer=fail_init)
    with pytest.raises(RuntimeError, match="initializer exploded"):
        await executor.start()
    assert executor.pids == []
    assert_no_zombie_children()
    with pytest.raises(ExecutorStopped):
        await executor.submit(Job(("echo", 1)))


async def test_notes_reach_the_parent_in_order_before_the_outcome() -> None:
    received: list[Any] = []
    outcomes: list[Any] = []

    def on_note(note: Any) -> None:
        received.append((note, len(outcomes)))

    executor = ProcessExecutor(work, concurrency=1, on_note=on_note)
    await executor.start()
    try:
        outcomes.append(await executor.submit(Job(("notes", 3))))
    finally:
        await executor.stop(wait=True)
    pid = received[0][0][2]
    assert pid != os.getpid()
    # all three, in order, each delivered while the job's outcome was still outstanding
    assert received == [(("note", i, pid), 0) for i in range(3)]
    assert outcomes == ["noted"]


def test_send_note_outside_a_pool_child_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="process-pool job"):
        send_note("x")
