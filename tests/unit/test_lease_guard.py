"""A job starts only while the worker holds its message: the executor's guard, the Redis
lease's own view of whether it still holds."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from celeriac import states
from celeriac.engines.redis.leases import Leases
from celeriac.engines.redis.scripts import RedisKeys
from celeriac.protocol.envelope import Envelope
from celeriac.protocol.results import make_meta
from celeriac.transport.base import Delivery
from celeriac.worker.executors.base import ExecutorStopped, Job, JobQueue, NotStarted, PendingJob
from celeriac.worker.settle import Settler


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


class _Holder:
    """A transport that says it lost ``lost``; records acks."""

    def __init__(self, lost: set[str]) -> None:
        self.lost = lost
        self.acked: list[str] = []

    def holds(self, delivery: Delivery) -> bool | None:
        return delivery.tag not in self.lost

    async def ack(self, deliveries: Any) -> None:
        self.acked += [d.tag for d in deliveries]


class _Backend:
    replies = None

    def __init__(self) -> None:
        self.stored: list[str] = []

    async def store(self, items: Any) -> None:
        self.stored += [task_id for task_id, _ in items]


async def test_the_result_of_a_run_whose_message_was_taken_over_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker healed after its lease lapsed: the run that took over owns the result."""
    transport, backend = _Holder({"me:1:1"}), _Backend()
    settler = Settler(transport, backend, busy=lambda: False)  # type: ignore[arg-type]
    kept, lost = (Delivery(Envelope(b"[]"), "celery", f"me:1:{i}") for i in range(2))
    with caplog.at_level(logging.WARNING):
        settler.settle(("a", make_meta("a", states.SUCCESS, 1)), kept)
        settler.settle(("b", make_meta("b", states.SUCCESS, 1)), lost)
        await settler.drain()
    assert backend.stored == ["a"]
    assert transport.acked == ["me:1:0", "me:1:1"]  # the transport forgets the lost one
    assert any("Task b" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records)
