"""The prefork pool resized by --autoscale, and children replaced over max_memory_per_child."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from celeriac.worker.autoscale import Autoscaler
from celeriac.worker.executors import Job, ProcessExecutor

pytestmark = [pytest.mark.timeout(60)]

_ballast: list[bytes] = []


def work(payload: tuple[str, Any]) -> Any:
    kind, arg = payload
    if kind == "pid":
        return os.getpid()
    if kind == "sleep":
        time.sleep(arg)
        return os.getpid()
    if kind == "grow":  # hold `arg` MiB for the life of the child
        _ballast.append(b"x" * (arg * 1024 * 1024))
        return os.getpid()
    raise ValueError(kind)


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_resize_grows_and_shrinks_the_pool() -> None:
    pool = ProcessExecutor(work, concurrency=1)
    await pool.start()
    try:
        pool.resize(3)
        # all three ready, not only forked: a job held for a child still starting would
        # go to whichever child is free first
        await _until(lambda: len(pool._idle) == 3)
        pids = set(await asyncio.gather(*(pool.submit(Job(("sleep", 0.3))) for _ in range(3))))
        assert len(pids) == 3  # three ran at once, one per child
        pool.resize(1)
        await _until(lambda: len(pool.pids) == 1)
        await asyncio.sleep(0.3)
        assert len(pool.pids) == 1  # the children asked to leave are not replaced
        assert await pool.submit(Job(("pid", None))) in pool.pids
    finally:
        await pool.stop(wait=True)


async def test_shrinking_lets_busy_children_finish_their_job() -> None:
    pool = ProcessExecutor(work, concurrency=2)
    await pool.start()
    try:
        running = [asyncio.ensure_future(pool.submit(Job(("sleep", 0.5)))) for _ in range(2)]
        await asyncio.sleep(0.1)
        pool.resize(1)
        done = await asyncio.gather(*running)
        assert len(set(done)) == 2  # both jobs ended normally
        await _until(lambda: len(pool.pids) == 1)
    finally:
        await pool.stop(wait=True)


async def test_a_child_over_max_memory_is_replaced_after_its_task() -> None:
    # A forked child starts at its parent's present size (a test process with coverage can
    # pass 200 MiB): the limit is 200 MiB above that.
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    baseline = pages * resource.getpagesize() // 1024
    pool = ProcessExecutor(work, concurrency=1, max_memory_per_child=baseline + 200 * 1024)
    await pool.start()
    try:
        first = await pool.submit(Job(("grow", 1)))
        assert await pool.submit(Job(("pid", None))) == first  # under the limit: kept
        big = await pool.submit(Job(("grow", 300)))  # the task completes...
        assert big == first
        replaced = await pool.submit(Job(("pid", None)))  # ...then the child is replaced
        assert replaced != first
    finally:
        await pool.stop(wait=True)


class FakePool:
    def __init__(self, size: int) -> None:
        self.capacity = size
        self.sizes: list[int] = []

    def resize(self, size: int) -> None:
        self.capacity = size
        self.sizes.append(size)


def test_autoscaler_follows_the_work_held_within_bounds() -> None:
    held = [0]
    pool = FakePool(2)
    scaler = Autoscaler(pool, maximum=6, minimum=2, held=lambda: held[0], idle_after=30)
    held[0] = 4
    assert scaler.step(now=100) == 4
    held[0] = 50
    assert scaler.step(now=101) == 6  # never above the maximum
    held[0] = 0
    assert scaler.step(now=110) == 6  # grew 9 s ago: keep the processes
    assert scaler.step(now=131) == 2  # idle long enough: down to the minimum
    assert pool.sizes == [4, 6, 2]


def test_autoscaler_keeps_one_process_when_the_minimum_is_zero() -> None:
    pool = FakePool(3)
    scaler = Autoscaler(pool, maximum=3, minimum=0, held=lambda: 0, idle_after=0)
    assert scaler.initial == 1
    assert scaler.step(now=1) == 1


def test_autoscaler_update_moves_the_bounds_the_next_check_follows() -> None:
    pool = FakePool(2)
    scaler = Autoscaler(pool, maximum=4, minimum=2, held=lambda: 0, idle_after=0)
    assert scaler.update(None, 3) == (4, 3)  # None keeps the max
    assert scaler.step(now=1.0) == 3  # grown to the new min
    assert scaler.update(8, None) == (8, 3)
    with pytest.raises(ValueError, match="min <= max"):
        scaler.update(2, None)
    assert (scaler.maximum, scaler.minimum) == (8, 3)
