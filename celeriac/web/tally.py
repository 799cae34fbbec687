"""Tasks counted by name and state, kept current as they change.

The overview shows how many tasks are in each state, and per name how many succeeded and
failed and their mean run time. Counting them at each page view costs time in the number
of tasks; a :class:`Tally` instead moves one task from its old ``(name, state)`` to its new
one as it changes, so a page reads a few dozen numbers. Two are kept:

* the feed's, of the tasks in memory (:meth:`Tally.take`, event by event: it forgets the
  task the bounded state drops to make room for a new one): the counts without a history;
* the history's, of every task its store holds (:class:`~celeriac.web.history.History`):
  read from the store once at start (:class:`Counted` groups), then moved as each flush
  replaces rows and each retention pass deletes them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from celeriac.events.state import State, Task

__all__ = ["Counted", "Key", "NameRow", "Tally"]

Key = tuple[str, str, float | None]
"""A task as the tally counts it: its name (``?`` when unknown), its state, and its run
time when it is finished and its events said it."""


class Counted(NamedTuple):
    """The tasks of one name in one state, as a store groups them."""

    name: str
    state: str
    tasks: int
    runtime: float
    """The sum of the run times of those of them that have one (see :data:`Key`)."""
    timed: int


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


def _key(task: Task) -> Key:
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
            self.count(_key(evicted), -1)
        if before is not None:
            self.count(before, -1)
        task = tasks.get(uuid)
        if task is not None:
            self.count(_key(task), +1)

    def add(self, task: Task) -> None:
        """Count ``task``, put into the state without an event (restored from history)."""
        self.count(_key(task), +1)

    def merge(self, groups: Iterable[Counted], sign: int) -> None:
        """Add (``sign`` +1) or take away (-1) whole groups of tasks."""
        for name, task_state, tasks, runtime, timed in groups:
            self.counts[(name, task_state)] += sign * tasks
            if timed:
                self.runtime[name] += sign * runtime
                self.timed[name] += sign * timed

    def count(self, key: Key, sign: int) -> None:
        """Add (``sign`` +1) or take away (-1) one task."""
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
