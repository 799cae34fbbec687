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

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from celeriac.events.state import TASK_EVENT_TO_STATE, State

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """The counters one dashboard keeps."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "celeriac_events", "Events received, by type.", ["type"], registry=self.registry
        )
        self.tasks = Counter(
            "celeriac_tasks", "Task state changes seen, by task name and state.",
            ["name", "state"], registry=self.registry,
        )  # fmt: skip
        self.runtime = Histogram(
            "celeriac_task_runtime_seconds", "Run time of finished tasks, by task name.",
            ["name"], buckets=RUNTIME_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.workers_up = Gauge(
            "celeriac_workers_up", "Workers with a recent heartbeat.", registry=self.registry
        )

    def bind(self, state: State) -> None:
        """Read ``workers_up`` from ``state`` at each scrape."""
        self.workers_up.set_function(lambda: sum(1 for _ in state.alive_workers()))

    def observe(self, event: dict[str, Any], state: State) -> None:
        """Count one event (after ``state`` took it, so a task's name is known)."""
        type = str(event.get("type", ""))
        self.events.labels(type=type).inc()
        group, _, subject = type.partition("-")
        if group != "task" or subject not in TASK_EVENT_TO_STATE:
            return
        task = state.tasks.get(str(event.get("uuid")))
        name = (task.name if task is not None else None) or "unknown"
        self.tasks.labels(name=name, state=TASK_EVENT_TO_STATE[subject]).inc()
        runtime = event.get("runtime")
        if subject in ("succeeded", "failed") and isinstance(runtime, int | float):
            self.runtime.labels(name=name).observe(float(runtime))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return bytes(generate_latest(self.registry))
