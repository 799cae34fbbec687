"""Tasks and workers as the dashboard shows them: Flower's JSON shapes, filters and sorting.

:func:`task_record` is the dictionary Flower's ``/api/task/info`` and ``/api/tasks`` return
for one task (every field of Celery's ``Task.as_dict``, ``None`` when no event said it, the
worker as its hostname). :func:`worker_record` is what events tell of a worker: Flower's
``/api/workers`` fills the rest from remote-control replies, which celeriac's dashboard does
not make. :func:`select_tasks` filters and sorts as ``/api/tasks`` does.
"""

from __future__ import annotations

import datetime as dt
import itertools
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from celeriac.events.state import State, Task, Worker

__all__ = [
    "DATE_FILTER_FORMAT",
    "SORT_KEYS",
    "TASK_FIELDS",
    "BadQuery",
    "TaskQuery",
    "select_tasks",
    "task_record",
    "worker_record",
]

TASK_FIELDS = (
    "uuid", "name", "state", "received", "sent", "started", "rejected", "succeeded",
    "failed", "retried", "revoked", "args", "kwargs", "eta", "expires", "retries", "worker",
    "result", "exception", "timestamp", "runtime", "traceback", "exchange", "routing_key",
    "clock", "client", "root", "root_id", "parent", "parent_id", "children",
)  # fmt: skip
"""The fields of Celery's ``events.state.Task.as_dict``, in its order."""

SORT_KEYS = frozenset({"name", "state", "received", "started"})
"""What ``sort_by`` may name (``-`` in front: descending), as Flower allows."""


class BadQuery(ValueError):
    """A filter or sort the task list cannot apply."""


def task_record(task: Task) -> dict[str, Any]:
    """One task in Flower's shape."""
    record = {name: getattr(task, name, None) for name in TASK_FIELDS}
    record["worker"] = task.worker.hostname if task.worker is not None else None
    record["root"] = task.root_id
    record["parent"] = task.parent_id
    record["children"] = []  # events do not name a task's children
    return record


def worker_record(worker: Worker) -> dict[str, Any]:
    """What events tell of one worker."""
    return {
        "hostname": worker.hostname,
        "status": worker.alive,
        "timestamp": worker.heartbeats[-1] if worker.heartbeats else None,
        "pid": worker.pid,
        "freq": worker.freq,
        "clock": worker.clock,
        "active_count": worker.active,
        "processed": worker.processed,
        "loadavg": worker.loadavg,
        "sw_ident": worker.sw_ident,
        "sw_ver": worker.sw_ver,
        "sw_sys": worker.sw_sys,
        "stats": {"pid": worker.pid, "clock": str(worker.clock)},
    }


@dataclass(frozen=True)
class TaskQuery:
    """The filters of ``/api/tasks`` (``"All"`` or empty means no filter, as in Flower)."""

    limit: int | None = None
    offset: int = 0
    state: str | None = None
    workername: str | None = None
    taskname: str | None = None
    sort_by: str | None = None
    search: str | None = None
    received_start: float | None = None
    received_end: float | None = None
    started_start: float | None = None
    started_end: float | None = None

    @property
    def filtered(self) -> bool:
        """Whether any filter is set (``limit``, ``offset`` and ``sort_by`` are not filters)."""
        return any(
            value is not None
            for value in (
                self.state, self.workername, self.taskname, self.search, self.received_start,
                self.received_end, self.started_start, self.started_end,
            )
        )  # fmt: skip

    @classmethod
    def from_params(cls, params: Any) -> TaskQuery:
        """A query from request parameters; :class:`BadQuery` names the bad one."""

        def text(key: str) -> str | None:
            value = params.get(key)
            return None if value in (None, "", "All") else str(value)

        sort_by = text("sort_by")
        if sort_by is not None and sort_by.lstrip("-") not in SORT_KEYS:
            keys = ", ".join(sorted(SORT_KEYS))
            raise BadQuery(
                f"sort_by must be one of {keys} (- in front: descending), not {sort_by!r}"
            )
        return cls(
            limit=_count(params, "limit"),
            offset=_count(params, "offset") or 0,
            state=text("state"),
            workername=text("workername"),
            taskname=text("taskname"),
            sort_by=sort_by,
            search=text("search"),
            received_start=_moment(params, "received_start"),
            received_end=_moment(params, "received_end"),
            started_start=_moment(params, "started_start"),
            started_end=_moment(params, "started_end"),
        )

    def matches(self, task: Task) -> bool:
        """Whether ``task`` passes every filter."""
        if self.state is not None and task.state != self.state.upper():
            return False
        if self.taskname is not None and task.name != self.taskname:
            return False
        worker = task.worker.hostname if task.worker is not None else None
        if self.workername is not None and worker != self.workername:
            return False
        if not _within(task.received, self.received_start, self.received_end):
            return False
        if not _within(task.started, self.started_start, self.started_end):
            return False
        return self.search is None or self._found(task)

    def _found(self, task: Task) -> bool:
        """``search``: a piece of the id, the name, or the text of args/kwargs/result."""
        needle = str(self.search).lower()
        haystack = (task.uuid, task.name, task.args, task.kwargs, task.result, task.exception)
        return any(needle in str(value).lower() for value in haystack if value is not None)


def _within(moment: float | None, start: float | None, end: float | None) -> bool:
    """Whether ``moment`` is after ``start`` and before ``end`` (each None: no bound)."""
    if start is None and end is None:
        return True
    if moment is None:
        return False
    return (start is None or moment > start) and (end is None or moment < end)


def _count(params: Any, key: str) -> int | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(f"{key} must be a whole number, not {value!r}") from None
    if number < 0:
        raise BadQuery(f"{key} must not be negative, not {number}")
    # Past any real count; bounded so that offset + limit stays a valid slice index.
    return min(number, sys.maxsize // 2)


DATE_FILTER_FORMAT = "%Y-%m-%d %H:%M"
"""How ``received_start``, ``received_end``, ``started_start`` and ``started_end`` are
written (Flower's format, local time)."""


def _moment(params: Any, key: str) -> float | None:
    value = params.get(key)
    if value in (None, ""):
        return None
    try:
        return time.mktime(dt.datetime.strptime(str(value), DATE_FILTER_FORMAT).timetuple())
    except ValueError:
        raise BadQuery(f"{key} must be written YYYY-MM-DD HH:MM, not {value!r}") from None


def select_tasks(state: State, query: TaskQuery) -> list[Task]:
    """The tasks ``query`` selects: latest news first, or by ``sort_by``; then offset and limit.

    The state keeps its tasks in the order their latest event came, so without ``sort_by``
    the newest are read first and reading stops once ``offset + limit`` matched: the first
    page costs the same with 1,000 tasks in memory as with 100,000.
    """
    newest_first: Iterable[Task] = reversed(list(state.tasks.values()))
    matching = (task for task in newest_first if query.matches(task))
    if query.sort_by is None:
        end = None if query.limit is None else query.offset + query.limit
        return list(itertools.islice(matching, query.offset, end))
    key = query.sort_by.lstrip("-")
    chosen = sorted(matching, key=lambda task: _sort_value(task, key))
    if query.sort_by.startswith("-"):
        chosen.reverse()
    end = None if query.limit is None else query.offset + query.limit
    return chosen[query.offset : end]


def _sort_value(task: Task, key: str) -> tuple[bool, Any]:
    """Missing values last, then by value (text or time)."""
    value = getattr(task, key, None)
    return (value is None, value if value is not None else 0)
