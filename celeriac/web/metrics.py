"""Prometheus metrics of the cluster, from its events: ``/metrics`` in the text format.

Each dashboard has its own registry (two dashboards in one process, or tests, do not
share counters). What it counts, from the events it receives since it started:

``celeriac_events_total{type}``
    events received, by type.
``celeriac_tasks_total{name, state}``
    tasks that reached a state (one per ``task-<state>`` event), by task name.
``celeriac_task_runtime_seconds{name}``
    a histogram of the run time that ``task-succeeded`` and ``task-failed`` events report.
``celeriac_workers_up``
    workers whose last heartbeat is within the expire window (read at scrape time).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from celeriac.events.state import TASK_EVENT_TO_STATE, State

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The counters one dashboard keeps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counts = _Counts()
        self.registry.register(self.counts)
        self.runtime = Histogram(
            "celeriac_task_runtime_seconds", "Run time of finished tasks, by task name.",
            ["name"], buckets=RUNTIME_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.workers_up = Gauge(
            "celeriac_workers_up", "Workers with a recent heartbeat.", registry=self.registry
        )
        # Each name's histogram, found once: labels() costs more than the rest of an event.
        self._histograms: dict[str, Any] = {}

    def _runtime(self, name: str) -> Any:
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = self.runtime.labels(name=name)
        return histogram

    def bind(self, state: State) -> None:
        """Read ``workers_up`` from ``state`` at each scrape."""
        self.workers_up.set_function(lambda: sum(1 for _ in state.alive_workers()))

    def observe(self, event: dict[str, Any], state: State) -> None:
        """Count one event (after ``state`` took it, so a task's name is known)."""
        type = str(event.get("type", ""))
        self.counts.events[type] += 1
        group, _, subject = type.partition("-")
        if group != "task" or subject not in TASK_EVENT_TO_STATE:
            return
        task = state.tasks.get(str(event.get("uuid")))
        name = (task.name if task is not None else None) or "unknown"
        self.counts.tasks[(name, TASK_EVENT_TO_STATE[subject])] += 1
        runtime = event.get("runtime")
        if subject in ("succeeded", "failed") and isinstance(runtime, int | float):
            self._runtime(name).observe(float(runtime))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))


class _Counts:
    """The event and task counters as plain counts, read at each scrape (a prometheus
    ``Counter`` takes a lock and three calls an increment, at every event)."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()
        self.tasks: Counter[tuple[str, str]] = Counter()

    def collect(self) -> Iterator[Metric]:
        """``celeriac_events_total`` and ``celeriac_tasks_total``."""
        events = CounterMetricFamily(
            "celeriac_events", "Events received, by type.", labels=["type"]
        )
        for type, count in list(self.events.items()):
            events.add_metric([type], count)
        yield events
        tasks = CounterMetricFamily(
            "celeriac_tasks", "Task state changes seen, by task name and state.",
            labels=["name", "state"],
        )  # fmt: skip
        for (name, state), count in list(self.tasks.items()):
            tasks.add_metric([name, state], count)
        yield tasks
