"""A job starts only while the worker holds its message: the executor's guard, the Redis
lease's own view of whether it still holds."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from celeriac.engines.redis.leases import Leases
from celeriac.engines.redis.scripts import RedisKeys
from celeriac.worker.executors.base import ExecutorStopped, Job, JobQueue, NotStarted, PendingJob


def _entry(outcomes: list[Any], guard: Any = None) -> PendingJob:
    return PendingJob(Job(payload=None, guard=guard), lambda ok, value: outcomes.append(value))


def test_a_job_its_guard_refuses_ends_not_started() -> None:
    outcomes: list[Any] = []
    queue = JobQueue()
    refused, allowed = _entry(outcomes, lambda: False), _entry(outcomes, lambda: True)
    queue.push(refused)
    queue.push(allowed)
    assert queue.pop() is allowed
    assert len(outcomes) == 1 and isinstance(outcomes[0], NotStarted)
    assert isinstance(outcomes[0], ExecutorStopped)  # the worker requeues what never ran


def _leases() -> Leases:
    return Leases(
        None,  # type: ignore[arg-type]  # holds() does no I/O
        RedisKeys(),
        {},
        consumer_id="me",
        lease_timeout=3.0,
        heartbeat_interval=1.0,
        sweep_interval=1.0,
    )


def test_lease_holds_until_it_goes_stale(caplog: pytest.LogCaptureFixture) -> None:
    leases = _leases()
    assert leases.holds("me:1:0") is True
    leases.last_beat = time.monotonic() - 2.6  # past lease - heartbeat / 2
    with caplog.at_level(logging.WARNING):
        assert leases.holds("me:1:0") is None
        assert leases.holds("me:1:1") is None
    assert sum("starts none of the deliveries" in r.getMessage() for r in caplog.records) == 1


def test_a_tag_the_sweep_requeued_is_never_held() -> None:
    leases = _leases()
    leases.lost.add("me:1:0")
    assert leases.holds("me:1:0") is False
    assert leases.holds("me:1:1") is True
