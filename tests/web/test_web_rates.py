"""Queue rates: messages in and out per second from task-sent / task-received over a sliding
minute, and from the depth's change where one side sends no events (each rate says which)."""

from __future__ import annotations

import time
import uuid

from celeriac.events.state import State
from celeriac.web.rates import WINDOW, QueueRates, Rate


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def feed(rates: QueueRates, state: State, event: dict[str, object]) -> None:
    event.setdefault("timestamp", time.time())
    state.event(dict(event))
    rates.observe(event, state)


def send(rates: QueueRates, state: State, queue: str | None, host: str = "w1") -> str:
    """One task through its events; ``queue`` None: the client sends no task-sent."""
    task_id = uuid.uuid4().hex
    if queue is not None:
        feed(rates, state, {"type": "task-sent", "uuid": task_id, "name": "t", "queue": queue,
                            "routing_key": queue})  # fmt: skip
    feed(rates, state, {"type": "task-received", "uuid": task_id, "name": "t", "hostname": host})
    return task_id


def test_both_sides_evented_count_per_queue_over_the_window() -> None:
    clock, state = Clock(), State()
    rates = QueueRates(clock)
    clock.now += WINDOW  # the dashboard has watched a whole window
    for _ in range(30):
        send(rates, state, "jobs")
    for _ in range(6):
        send(rates, state, "other")
    rate_in, rate_out = rates.rates("jobs")
    assert rate_in == Rate(30 / WINDOW, "events") and rate_out == Rate(30 / WINDOW, "events")
    assert rates.rates("other")[0] == Rate(6 / WINDOW, "events")
    clock.now += WINDOW + 1  # they slid out of the window
    assert rates.rates("jobs") == (Rate(0.0, "events"), Rate(0.0, "events"))


def test_a_young_dashboard_divides_by_the_time_it_has_watched() -> None:
    clock, state = Clock(), State()
    rates = QueueRates(clock)
    clock.now += 10
    for _ in range(20):
        send(rates, state, "jobs")
    assert rates.rates("jobs")[0] == Rate(2.0, "events")


def test_without_task_sent_the_rate_in_comes_from_the_depth() -> None:
    clock, state = Clock(), State()
    rates = QueueRates(clock)
    clock.now += WINDOW
    rates.sample({"jobs": 100})
    assert rates.rates("jobs", ["w1"])[0] == Rate(None, None)  # one sample: no rate in yet
    for _ in range(20):  # w1 consumes only jobs: its receipts are that queue's
        send(rates, state, None, host="w1")
    clock.now += 10
    rates.sample({"jobs": 150})  # +5/s while 2/s came out: 7/s went in
    rate_in, rate_out = rates.rates("jobs", ["w1"])
    assert rate_out == Rate(20 / WINDOW, "events")
    assert rate_in.source == "depth" and rate_in.per_second is not None
    assert abs(rate_in.per_second - (5 + 20 / WINDOW)) < 1e-9
    # A worker that consumes other queues too says nothing about this one.
    assert rates.rates("jobs", [])[1].source == "depth"


def test_without_task_received_the_rate_out_comes_from_the_depth() -> None:
    clock, state = Clock(), State()
    rates = QueueRates(clock)
    clock.now += WINDOW
    for _ in range(12):
        task_id = uuid.uuid4().hex
        feed(rates, state, {"type": "task-sent", "uuid": task_id, "queue": "jobs"})
    rates.sample({"jobs": 50})
    clock.now += 4
    rates.sample({"jobs": 42})  # -2/s with 0.2/s in: 2.2/s out
    rate_in, rate_out = rates.rates("jobs")
    assert rate_in == Rate(12 / WINDOW, "events")
    assert rate_out.source == "depth" and rate_out.per_second is not None
    assert abs(rate_out.per_second - (2 + 12 / WINDOW)) < 1e-9


def test_no_events_at_all_show_the_depths_change() -> None:
    clock = Clock()
    rates = QueueRates(clock)
    assert rates.rates("jobs") == (Rate(None, None), Rate(None, None))
    rates.sample({"jobs": 10})
    clock.now += 0.5
    rates.sample({"jobs": 11})  # too close to the first to make a rate
    assert rates.rates("jobs") == (Rate(None, None), Rate(None, None))
    clock.now += 4.5
    rates.sample({"jobs": 0})
    assert rates.rates("jobs") == (Rate(0.0, "depth"), Rate(2.0, "depth"))
    clock.now += 2 * WINDOW  # old samples are forgotten: one left, no rate
    rates.sample({"jobs": 1})
    assert rates.rates("jobs") == (Rate(None, None), Rate(None, None))
