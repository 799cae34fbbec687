"""The cluster's state built from events: Celery's ``app.events.State`` surface.

:class:`State` takes events (:meth:`State.event`) and keeps :class:`Worker`\\ s by
hostname and :class:`Task`\\ s by id, each bounded (``max_workers_in_memory``,
``max_tasks_in_memory``: the least recently updated go first). A worker is ``alive``
while its last heartbeat is younger than twice its ``freq`` (Celery's expire window,
which Flower uses too). A task's ``state`` follows its events with Celery's precedence
rules, so a late ``task-received`` after ``task-succeeded`` fills in the name and
arguments without moving the state back; each task also keeps a ``timeline`` of
``(state, timestamp)`` in the order the events came.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from celeriac import states

__all__ = ["HEARTBEAT_EXPIRE_WINDOW", "TASK_EVENT_TO_STATE", "State", "Task", "Worker"]

HEARTBEAT_EXPIRE_WINDOW = 200
"""Percent of ``freq`` after the last heartbeat that a worker counts as alive."""

TASK_EVENT_TO_STATE = {
    "sent": states.PENDING,
    "received": states.RECEIVED,
    "started": states.STARTED,
    "failed": states.FAILURE,
    "retried": states.RETRY,
    "succeeded": states.SUCCESS,
    "revoked": states.REVOKED,
    "rejected": states.REJECTED,
}

_RECEIVED_FIELDS = frozenset(
    {"name", "args", "kwargs", "parent_id", "root_id", "retries", "eta", "expires"}
)
"""What an event older than the task's state may still fill in (Celery's merge rule)."""


class Worker:
    """One worker as its events describe it."""

    heartbeat_max = 4

    def __init__(self, hostname: str | None = None, **fields: Any) -> None:
        self.hostname = hostname
        self.pid: int | None = None
        self.freq: float = 60.0
        self.heartbeats: list[float] = []
        self.clock = 0
        self.active: int | None = None
        self.processed: int | None = None
        self.loadavg: Any = None
        self.sw_ident: str | None = None
        self.sw_ver: str | None = None
        self.sw_sys: str | None = None
        self.update(fields)

    def update(self, fields: dict[str, Any], **more: Any) -> None:
        """Set the fields an event carries."""
        for key, value in {**fields, **more}.items():
            if key != "type":
                setattr(self, key, value)

    def event(
        self,
        type: str | None,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Take a worker event (``online``, ``heartbeat``, ``offline``) or a task's sign of life."""
        if fields:
            self.update(fields)
        if type == "offline":
            self.heartbeats.clear()
            return
        if not local_received or not timestamp:
            return
        self.heartbeats.append(local_received)
        self.heartbeats.sort()
        del self.heartbeats[: -self.heartbeat_max]

    @property
    def heartbeat_expires(self) -> float:
        """When the worker stops counting as alive without another heartbeat."""
        return self.heartbeats[-1] + self.freq * (HEARTBEAT_EXPIRE_WINDOW / 100)

    @property
    def alive(self) -> bool:
        """Whether a heartbeat came within the expire window."""
        return bool(self.heartbeats) and time.time() < self.heartbeat_expires

    @property
    def status_string(self) -> str:
        """``ONLINE`` or ``OFFLINE``."""
        return "ONLINE" if self.alive else "OFFLINE"

    @property
    def id(self) -> str:
        """``hostname.pid``."""
        return f"{self.hostname}.{self.pid}"

    def __repr__(self) -> str:
        return f"<Worker: {self.hostname} ({self.status_string} clock:{self.clock})"


class Task:
    """One task as its events describe it."""

    # What events may say (None until one does), as class attributes like Celery's.
    received: float | None = None
    sent: float | None = None
    started: float | None = None
    succeeded: float | None = None
    failed: float | None = None
    retried: float | None = None
    revoked: float | None = None
    rejected: float | None = None
    args: Any = None
    kwargs: Any = None
    eta: str | None = None
    expires: str | None = None
    retries: int | None = None
    result: Any = None
    exception: str | None = None
    runtime: float | None = None
    traceback: str | None = None
    exchange: str | None = None
    routing_key: str | None = None
    root_id: str | None = None
    parent_id: str | None = None

    _info_fields = (
        "args", "kwargs", "retries", "result", "eta", "runtime", "expires",
        "exception", "exchange", "routing_key", "root_id", "parent_id",
    )  # fmt: skip

    def __init__(self, uuid: str | None = None, **fields: Any) -> None:
        self.uuid = uuid
        self.state = states.PENDING
        self.name: str | None = None
        self.worker: Worker | None = None
        self.client: str | None = None
        self.timestamp: float | None = None
        self.clock = 0
        self.timeline: list[tuple[str, float | None]] = []
        """``(state, timestamp)`` of each task event, in the order they came."""
        self.__dict__.update(fields)

    def event(
        self,
        type: str,
        timestamp: float | None = None,
        local_received: float | None = None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """Take a task event (``received``, ``succeeded`` ...) with Celery's merge rules."""
        fields = dict(fields or {})
        state = TASK_EVENT_TO_STATE.get(type)
        if state is not None:
            setattr(self, type, timestamp)
        else:
            state = type.upper()  # a custom event
        self.timeline.append((state, timestamp))
        older = states.precedence(state) > states.precedence(self.state)
        if older and states.RETRY not in (state, self.state):
            if state == states.RECEIVED:
                fields = {k: v for k, v in fields.items() if k in _RECEIVED_FIELDS}
            else:
                fields = {}
        else:
            fields.update(state=state, timestamp=timestamp)
        fields.pop("type", None)
        fields.pop("hostname", None)
        self.__dict__.update(fields)

    @property
    def id(self) -> str | None:
        """The task id."""
        return self.uuid

    @property
    def ready(self) -> bool:
        """Whether the task reached a final state."""
        return self.state in states.READY_STATES

    @property
    def origin(self) -> str | None:
        """The worker's id, or the client's hostname for a task no worker took yet."""
        return self.client if self.worker is None else self.worker.id

    def info(self, fields: Any = None, extra: Any = None) -> dict[str, Any]:
        """The fields worth showing that have a value."""
        keys = list(self._info_fields if fields is None else fields) + list(extra or ())
        return {k: getattr(self, k, None) for k in keys if getattr(self, k, None) is not None}

    def as_dict(self) -> dict[str, Any]:
        """Every field, the worker as its hostname."""
        data = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}
        data["worker"] = self.worker.hostname if self.worker is not None else None
        return data

    def __repr__(self) -> str:
        return f"<Task: {self.name}({self.uuid}) {self.state} clock:{self.clock}>"


class _Bounded(OrderedDict[str, Any]):
    """A mapping that forgets its least recently set entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class State:
    """Workers and tasks of a cluster, kept up to date from its events."""

    def __init__(
        self,
        callback: Callable[[State, dict[str, Any]], Any] | None = None,
        max_workers_in_memory: int = 5000,
        max_tasks_in_memory: int = 10000,
        on_node_join: Callable[[Worker], Any] | None = None,
        on_node_leave: Callable[[Worker], Any] | None = None,
    ) -> None:
        self.event_callback = callback
        self.max_workers_in_memory = max_workers_in_memory
        self.max_tasks_in_memory = max_tasks_in_memory
        self.workers: _Bounded = _Bounded(max_workers_in_memory)
        self.tasks: _Bounded = _Bounded(max_tasks_in_memory)
        self.on_node_join = on_node_join
        self.on_node_leave = on_node_leave
        self.event_count = 0
        self.task_count = 0
        self._seen_types: set[str] = set()
        self._mutex = threading.Lock()

    def event(self, event: dict[str, Any]) -> tuple[Any, str]:
        """Take one event; ``((object, created), subject)`` as Celery's ``State.event``."""
        with self._mutex:
            return self._event(event)

    def _event(self, event: dict[str, Any]) -> tuple[Any, str]:
        self.event_count += 1
        if self.event_callback is not None:
            self.event_callback(self, event)
        group, _, subject = str(event.get("type", "")).partition("-")
        if group == "worker" and "hostname" in event:
            return self._worker_event(subject, event), subject
        if group == "task" and "uuid" in event:
            return self._task_event(subject, event), subject
        return None, subject

    def _worker_event(self, subject: str, event: dict[str, Any]) -> tuple[Worker, bool]:
        hostname = event["hostname"]
        worker = self.workers.get(hostname)
        created = worker is None
        if worker is None:
            worker = Worker(hostname)
            if subject != "offline":
                self.workers[hostname] = worker
        else:
            self.workers[hostname] = worker  # most recently seen
        worker.event(subject, event.get("timestamp"), event.get("local_received"), event)
        if self.on_node_join is not None and (created or subject == "online"):
            self.on_node_join(worker)
        if subject == "offline":
            if self.on_node_leave is not None:
                self.on_node_leave(worker)
            self.workers.pop(hostname, None)
        return worker, created and subject != "offline"

    def _task_event(self, subject: str, event: dict[str, Any]) -> tuple[Task, bool]:
        task, created = self.get_or_create_task(event["uuid"])
        hostname = event.get("hostname")
        if subject == "sent":
            task.client = hostname
        elif hostname is not None:
            worker, _ = self.get_or_create_worker(hostname)
            task.worker = worker
            worker.event(None, event.get("local_received"), event.get("timestamp"))
        if subject == "received":
            self.task_count += 1
        task.event(subject, event.get("timestamp"), event.get("local_received"), event)
        if task.name is not None:
            self._seen_types.add(task.name)
        return task, created

    def get_or_create_worker(self, hostname: str, **fields: Any) -> tuple[Worker, bool]:
        """The worker named ``hostname`` (made if unknown) and whether it was made."""
        worker = self.workers.get(hostname)
        if worker is not None:
            if fields:
                worker.update(fields)
            return worker, False
        worker = self.workers[hostname] = Worker(hostname, **fields)
        return worker, True

    def get_or_create_task(self, uuid: str) -> tuple[Task, bool]:
        """The task ``uuid`` (made if unknown) and whether it was made."""
        task = self.tasks.get(uuid)
        if task is not None:
            self.tasks[uuid] = task  # most recently seen
            return task, False
        task = self.tasks[uuid] = Task(uuid)
        return task, True

    def add_task(self, task: Task) -> None:
        """Hold ``task`` as the most recently updated (one restored from a stored history)."""
        if task.uuid is None:
            raise ValueError("a task to add needs its uuid")
        with self._mutex:
            self.tasks[task.uuid] = task
            if task.name is not None:
                self._seen_types.add(task.name)

    def freeze_while(self, fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``fun`` while no event is taken (``clear_after=True`` clears after)."""
        clear_after = kwargs.pop("clear_after", False)
        with self._mutex:
            try:
                return fun(*args, **kwargs)
            finally:
                if clear_after:
                    self._clear()

    def clear_tasks(self, ready: bool = True) -> None:
        """Forget the finished tasks (every task when ``ready`` is false)."""
        with self._mutex:
            self._clear_tasks(ready)

    def _clear_tasks(self, ready: bool) -> None:
        keep = [(k, t) for k, t in self.tasks.items() if ready and not t.ready]
        self.tasks.clear()
        for key, task in keep:
            self.tasks[key] = task

    def clear(self, ready: bool = True) -> None:
        """Forget workers and (finished, or all) tasks, and the counts."""
        with self._mutex:
            self._clear(ready)

    def _clear(self, ready: bool = True) -> None:
        self.workers.clear()
        self._clear_tasks(ready)
        self.event_count = 0
        self.task_count = 0

    def itertasks(self, limit: int | None = None) -> Iterator[tuple[str, Task]]:
        """``(uuid, task)`` pairs, at most ``limit``."""
        for index, row in enumerate(list(self.tasks.items())):
            if limit is not None and index >= limit:
                return
            yield row

    def tasks_by_time(
        self, limit: int | None = None, reverse: bool = True
    ) -> Iterator[tuple[str, Task]]:
        """``(uuid, task)`` pairs by the time of their latest event, newest first."""
        rows = sorted(self.tasks.items(), key=lambda row: row[1].timestamp or 0.0, reverse=reverse)
        yield from rows[:limit]

    tasks_by_timestamp = tasks_by_time

    def tasks_by_type(self, name: str, limit: int | None = None) -> list[tuple[str, Task]]:
        """The tasks named ``name``, newest first."""
        return [row for row in self.tasks_by_time() if row[1].name == name][:limit]

    def tasks_by_worker(self, hostname: str, limit: int | None = None) -> list[tuple[str, Task]]:
        """The tasks of the worker ``hostname``, newest first."""
        rows = self.tasks_by_time()
        return [r for r in rows if r[1].worker is not None and r[1].worker.hostname == hostname][
            :limit
        ]

    def task_types(self) -> list[str]:
        """Every task name seen, sorted."""
        return sorted(self._seen_types)

    def alive_workers(self) -> Iterator[Worker]:
        """The workers that seem alive."""
        return (w for w in list(self.workers.values()) if w.alive)

    def __repr__(self) -> str:
        return f"<State: events={self.event_count} tasks={self.task_count}>"
