"""Tasks in memory counted by name and state, kept current event by event.

The overview shows how many of the tasks the dashboard holds are in each state, and per
name how many succeeded and failed and their mean run time. Counting the whole state at
each page view costs time in the number of tasks; a :class:`Tally` instead moves one task
from its old ``(name, state)`` to its new one as each event is taken, and forgets the task
the bounded state drops to make room for a new one, so a page reads a few dozen numbers.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from celeriac.events.state import State, Task

__all__ = ["NameRow", "Tally"]


@dataclass
class NameRow:
    """The tasks of one name."""

    name: str
    total: int = 0
    succeeded: int = 0
    failed: int = 0
    runtime: float = 0.0
    timed: int = 0

    @property
    def mean_runtime(self) -> float | None:
        """The mean run time of the tasks whose events said it (successes), or None."""
        return self.runtime / self.timed if self.timed else None


def _key(task: Task) -> tuple[str, str, float | None]:
    runtime = task.runtime if task.ready and isinstance(task.runtime, int | float) else None
    return task.name or "?", task.state, runtime


class Tally:
    """Counts of the tasks a :class:`State` holds, by name and state, and run times by name."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self.runtime: defaultdict[str, float] = defaultdict(float)
        self.timed: Counter[str] = Counter()

    def take(self, state: State, event: dict[str, Any]) -> None:
        """Apply ``event`` to ``state``, keeping the counts in step."""
        uuid = event.get("uuid")
        if not str(event.get("type", "")).startswith("task-") or not isinstance(uuid, str):
            state.event(event)
            return
        tasks = state.tasks
        task = tasks.get(uuid)
        before = _key(task) if task is not None else None
        evicted = None
        if task is None and len(tasks) >= tasks.limit:
            evicted = next(iter(tasks.values()), None)  # the bounded state drops its oldest
        state.event(event)
        if evicted is not None and evicted.uuid not in tasks:
            self._add(_key(evicted), -1)
        if before is not None:
            self._add(before, -1)
        task = tasks.get(uuid)
        if task is not None:
            self._add(_key(task), +1)

    def add(self, task: Task) -> None:
        """Count ``task``, put into the state without an event (restored from history)."""
        self._add(_key(task), +1)

    def _add(self, key: tuple[str, str, float | None], sign: int) -> None:
        name, task_state, runtime = key
        self.counts[(name, task_state)] += sign
        if runtime is not None:
            self.runtime[name] += sign * float(runtime)
            self.timed[name] += sign

    def by_state(self) -> dict[str, int]:
        """How many tasks are in each state."""
        found: Counter[str] = Counter()
        for (_, task_state), count in self.counts.items():
            found[task_state] += count
        return {key: count for key, count in found.items() if count}

    def by_name(self) -> list[NameRow]:
        """A row per task name, most tasks first."""
        rows: dict[str, NameRow] = {}
        for (name, task_state), count in self.counts.items():
            if count:
                row = rows.setdefault(name, NameRow(name))
                row.total += count
                row.succeeded += count if task_state == "SUCCESS" else 0
                row.failed += count if task_state == "FAILURE" else 0
        for row in rows.values():
            row.runtime = self.runtime.get(row.name, 0.0)
            row.timed = self.timed[row.name]
        return sorted(rows.values(), key=lambda row: (-row.total, row.name))
