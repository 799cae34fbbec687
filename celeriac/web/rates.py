"""Messages in and out of each queue per second, from the events and from the queue depths.

A message goes in when it is published (``task-sent``, whose ``queue`` / ``routing_key``
names the queue: only from clients with ``task_send_sent_event``) and comes out when a
worker takes it (``task-received``: it names no queue, so the task's routing key from its
``task-sent`` is used, or else the queue of the worker when it consumes only one). A
:class:`QueueRates` counts both per queue in one-second slots over a sliding window of
:data:`WINDOW` seconds, as the dashboard receives them (its own clock: workers' clocks may
be off).

Where one side has no events, the depth samples fill in: the depth changes by what went in
less what came out, so ``in = out + Δdepth/Δt`` and ``out = in - Δdepth/Δt`` (never below
zero), from the oldest and newest depth seen in the window (the queues page and API sample
it each time they count). With neither side evented only the depth's own change is known:
a rise is shown as in, a fall as out. Each rate says where it came from: ``"events"``,
``"depth"``, or None (not enough samples yet).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from celeriac.events.state import State

__all__ = ["WINDOW", "QueueRates", "Rate"]

WINDOW = 60
"""Seconds the rates are averaged over."""

_MIN_SPAN = 1.0  # depth samples closer than this say nothing about a rate


@dataclass(frozen=True)
class Rate:
    """Messages per second one way, and what it was measured from."""

    per_second: float | None
    source: str | None  # "events", "depth" or None


class _Window:
    """Counts in one-second slots over the last ``WINDOW`` seconds."""

    def __init__(self) -> None:
        self.slots: Counter[int] = Counter()

    def add(self, now: float) -> None:
        self.slots[int(now)] += 1
        self._trim(now)

    def total(self, now: float) -> int:
        self._trim(now)
        return sum(self.slots.values())

    def _trim(self, now: float) -> None:
        first = int(now) - WINDOW + 1
        for slot in [slot for slot in self.slots if slot < first]:
            del self.slots[slot]


class QueueRates:
    """In and out rates of the queues, kept from the events and the depths the pages see."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self._in: defaultdict[str, _Window] = defaultdict(_Window)
        self._out: defaultdict[str, _Window] = defaultdict(_Window)
        self._out_by_host: defaultdict[str, _Window] = defaultdict(_Window)
        self._sent_seen: set[str] = set()  # queues whose publishers send task-sent
        self._received_seen: set[str] = set()  # queues and workers that sent task-received
        self._depths: defaultdict[str, deque[tuple[float, int]]] = defaultdict(deque)

    def observe(self, event: dict[str, Any], state: State) -> None:
        """Count one event (call after the state took it)."""
        kind = event.get("type")
        now = self.clock()
        if kind == "task-sent":
            queue = event.get("queue") or event.get("routing_key")
            if isinstance(queue, str) and queue:
                self._sent_seen.add(queue)
                self._in[queue].add(now)
        elif kind == "task-received":
            task = state.tasks.get(str(event.get("uuid")))
            queue = task.routing_key if task is not None else None
            if isinstance(queue, str) and queue:
                self._received_seen.add(queue)
                self._out[queue].add(now)
            elif isinstance(event.get("hostname"), str):
                self._received_seen.add(event["hostname"])
                self._out_by_host[event["hostname"]].add(now)

    def sample(self, depths: dict[str, int]) -> None:
        """Note the depths just counted (kept over the window, about a second apart)."""
        now = self.clock()
        for queue, depth in depths.items():
            samples = self._depths[queue]
            if len(samples) == 1 and now - samples[0][0] < _MIN_SPAN:
                continue  # too close to the only one to say anything yet
            if len(samples) > 1 and now - samples[-2][0] < _MIN_SPAN:
                samples[-1] = (now, depth)  # keep them a second apart: the newest replaces
            else:
                samples.append((now, depth))
            while len(samples) > 2 and samples[1][0] <= now - WINDOW:
                samples.popleft()

    def rates(self, queue: str, sole_consumers: Iterable[str] = ()) -> tuple[Rate, Rate]:
        """``(in, out)`` of ``queue``; ``sole_consumers`` are the workers that consume it and
        no other queue: their receipts that name no queue are this queue's."""
        now = self.clock()
        span = max(1.0, min(float(WINDOW), now - self.started))
        hosts = [host for host in sole_consumers if host in self._received_seen]
        rate_in = self._in[queue].total(now) / span if queue in self._sent_seen else None
        rate_out = None
        if queue in self._received_seen or hosts:
            count = self._out[queue].total(now) if queue in self._out else 0
            count += sum(self._out_by_host[host].total(now) for host in hosts)
            rate_out = count / span
        if rate_in is not None and rate_out is not None:
            return Rate(rate_in, "events"), Rate(rate_out, "events")
        delta = self._depth_change(queue, now)
        if delta is None:
            return _evented(rate_in), _evented(rate_out)
        if rate_in is not None:
            return Rate(rate_in, "events"), Rate(max(0.0, rate_in - delta), "depth")
        if rate_out is not None:
            return Rate(max(0.0, rate_out + delta), "depth"), Rate(rate_out, "events")
        return Rate(max(0.0, delta), "depth"), Rate(max(0.0, -delta), "depth")

    def _depth_change(self, queue: str, now: float) -> float | None:
        """The depth's change per second over the window, or None without two samples."""
        samples = [s for s in self._depths.get(queue, ()) if s[0] > now - WINDOW - _MIN_SPAN]
        if len(samples) < 2 or samples[-1][0] - samples[0][0] < _MIN_SPAN:
            return None
        (first_at, first), (last_at, last) = samples[0], samples[-1]
        return (last - first) / (last_at - first_at)


def _evented(rate: float | None) -> Rate:
    return Rate(rate, "events" if rate is not None else None)
