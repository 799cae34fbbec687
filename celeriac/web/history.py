"""Task history that survives a restart, and the task list's filters over all of it.

The feed's :class:`~celeriac.events.state.State` holds the newest ``max_tasks`` in memory.
A :class:`History` writes each task that events changed to a :class:`HistoryStore` once a
second (one transaction a batch; the store encodes and writes off the event loop), and
when the dashboard starts it loads the newest ``max_tasks`` back (by the time of their
latest event): yesterday's failures, their tracebacks and the overview's counts are there
after a restart. A task older than what memory holds is still found by id, and a filtered
task list (:meth:`History.select`) is answered from the store, merged with the tasks
changed since the last flush. Rows go when they are older than ``max_age`` seconds (since
their latest event) or beyond the newest ``max_rows``, checked once a minute.

Stores: a SQLite file of the dashboard's own (:mod:`celeriac.web.history_sqlite`, the
default), or the app's SQL result database, PostgreSQL (:mod:`celeriac.web.history_sql`)
or SQLite (a table in the backend's file): :func:`open_history` picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from celeriac.engines import scheme_of, unprefixed
from celeriac.events.state import State, Task, Worker
from celeriac.exceptions import ImproperlyConfigured
from celeriac.states import READY_STATES
from celeriac.web.charts import Series
from celeriac.web.records import TASK_FIELDS, TaskQuery, task_record
from celeriac.web.tally import Counted, Key, Tally

try:
    import orjson
except ImportError:  # pragma: no cover - exercised only without the speedups extra
    orjson = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_MAX_ROWS",
    "HIGH_WATER",
    "MAX_PENDING",
    "TABLE",
    "History",
    "STORE_ERRORS",
    "HistoryStore",
    "Row",
    "open_history",
    "decode_record",
    "encode_record",
    "restore_task",
    "row_key",
    "task_row",
]

logger = logging.getLogger("celeriac.web")

DEFAULT_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a task stays in the history after its last event (a week)."""

DEFAULT_MAX_ROWS = 1_000_000
"""Tasks the history keeps at most (the least recently updated go first)."""

PRUNE_EVERY = 60.0
"""Seconds between two passes of the retention rules."""

MAX_PENDING = 100_000
"""Changed tasks kept for the next flush while the store fails; beyond, the oldest go."""

HIGH_WATER = 20_000
"""Changed tasks waiting for the writer beyond which the feed waits for it (see
:meth:`History.caught_up`): a stream faster than the store writes stays in the broker,
not in the dashboard's memory."""

TABLE = "celeriac_dashboard_tasks"
"""The history's table in a result database (the dashboard's own file keeps its old name)."""

# What a stored record gives back to a Task: its fields but those derived from others.
_RESTORED = frozenset(TASK_FIELDS) - {"uuid", "worker", "root", "parent", "children"}
_STORED = tuple(key for key in TASK_FIELDS if key not in ("worker", "root", "parent", "children"))


class Row(NamedTuple):
    """One task as a store keeps it: the columns it filters on and the whole record."""

    uuid: str
    name: str | None
    state: str
    worker: str | None
    updated: float
    """The time of its latest event: orders the tasks as the state does, and ages them."""
    received: float | None
    started: float | None
    haystack: str
    """What ``search`` looks in: id, name, args, kwargs, result, exception, lowercased."""
    record: dict[str, Any]


class HistoryStore(Protocol):
    """Where a :class:`History` keeps its rows; every call may run off the event loop."""

    async def write(self, rows: list[Row]) -> dict[str, Key]:
        """Insert or replace ``rows``, in one transaction; the keys (:data:`Key`) of the
        rows it replaced, as they were, by id. A row without a name adds to the stored
        one (its name, worker, times, and record fields it lacks are kept)."""

    async def counts(self) -> list[Counted]:
        """Every row, grouped by name and state."""

    async def newest(self, limit: int) -> list[dict[str, Any]]:
        """The records of the ``limit`` most recently updated tasks, newest first."""

    async def finished_since(self, oldest: float) -> list[tuple[str, Any, Any]]:
        """(state, finished at, runtime) of the tasks done since ``oldest``."""

    async def find(self, uuid: str) -> dict[str, Any] | None:
        """The record of task ``uuid``, or None."""

    async def select(self, query: TaskQuery, count: int) -> list[tuple[str, Any]]:
        """(uuid, sort key) of the rows ``query`` filters, sorted, from the first to the
        ``count``-th (``query.offset`` is the caller's: it merges before paging); the key
        is ``updated`` without ``sort_by``, else that column."""

    async def records(self, uuids: list[str]) -> dict[str, dict[str, Any]]:
        """The records of the tasks ``uuids`` that the store holds, by id."""

    async def prune(self, oldest: float, max_rows: int) -> list[Counted]:
        """Delete the rows updated before ``oldest`` and beyond the newest ``max_rows``;
        what went, grouped by name and state."""

    async def close(self) -> None:
        """Let go of the connection (a later call opens it again)."""


def restore_task(record: dict[str, Any]) -> Task:
    """The :class:`Task` a stored record describes (its worker as a detached name)."""
    fields = {key: value for key, value in record.items() if key in _RESTORED}
    task = Task(record["uuid"], **fields)
    hostname = record.get("worker")
    if hostname is not None:
        task.worker = Worker(hostname)
    task.timeline = [(state, when) for state, when in record.get("timeline") or ()]
    return task


class History:
    """The dashboard's tasks in ``store`` (a path: a SQLite file of its own)."""

    def __init__(
        self,
        store: str | Path | HistoryStore,
        *,
        max_age: float = DEFAULT_MAX_AGE,
        max_rows: int = DEFAULT_MAX_ROWS,
        interval: float = 1.0,
    ) -> None:
        if max_age <= 0 or max_rows < 1:
            raise ValueError("the history needs a positive max_age and max_rows")
        if isinstance(store, str | Path):
            from celeriac.web.history_sqlite import SQLiteHistory  # noqa: PLC0415 (a cycle)

            store = SQLiteHistory(store)
        self.store: HistoryStore = store
        self.max_age = max_age
        self.max_rows = max_rows
        self.interval = interval
        self._changed: dict[str, Task] = {}
        self._writing: dict[str, Task] = {}
        # Kept by object, not by id: memory may drop a task before the next flush.
        self.totals = Tally()
        """Every task the store holds, by name and state, as of its last write: the
        overview's counts (memory holds only the newest tasks)."""
        self._wake = asyncio.Event()  # the writer flushes now, not at its next interval
        self._taken = asyncio.Event()  # set when a flush took the changes
        self._writer_runs = False
        self._failing = False  # the last flush failed: the feed does not wait (MAX_PENDING)

    def __repr__(self) -> str:
        return f"<History {self.store!r}>"

    @property
    def path(self) -> Path | None:
        """The SQLite file, when the history is kept in one (else None)."""
        path = getattr(self.store, "path", None)
        return path if isinstance(path, Path) else None

    def changed(self, task: Task) -> None:
        """Note that an event changed ``task``: it is written at the next flush."""
        if task.uuid is not None:
            self._changed[task.uuid] = task

    def behind(self) -> bool:
        """Whether :data:`HIGH_WATER` changed tasks wait for a writer that runs and whose
        store answers (while it fails, :data:`MAX_PENDING` bounds them instead)."""
        return self._writer_runs and not self._failing and len(self._changed) >= HIGH_WATER

    async def caught_up(self) -> None:
        """Until the writer took the changes waiting (at once, not at its interval): the
        feed's back-pressure when it is :meth:`behind`, so that what waits in memory stays
        within about twice :data:`HIGH_WATER` tasks (those taken, being written, and as
        many new) however fast the events come."""
        while self.behind():
            self._taken.clear()
            self._wake.set()
            await self._taken.wait()

    def pending(self) -> dict[str, Task]:
        """The tasks changed since the store last committed them (by id)."""
        return {**self._writing, **self._changed}

    async def load(self, state: State, tally: Tally) -> int:
        """Count the stored tasks into :attr:`totals`, and put the newest (as many as
        ``state`` holds) into ``state`` and ``tally``; how many."""
        totals = Tally()
        totals.merge(await self.store.counts(), +1)  # one pass over the table, at start
        self.totals = totals
        records = await self.store.newest(state.max_tasks_in_memory)
        for record in reversed(records):  # oldest first: the state keeps the newest last
            task = restore_task(record)
            if task.uuid is not None and task.uuid not in state.tasks:
                state.add_task(task)
                tally.add(task)
        return len(records)

    async def chart(self, series: Series) -> int:
        """Count into ``series`` the tasks that finished within its window; how many.

        Read from the store rather than from memory, which may hold fewer tasks than an
        hour brings."""
        rows = await self.store.finished_since(time.time() - series.window)
        for state, when, runtime in rows:
            if isinstance(when, int | float):
                number = float(runtime) if isinstance(runtime, int | float) else None
                series.add(float(when), failed=state == "FAILURE", runtime=number)
        return len(rows)

    async def find(self, uuid: str) -> dict[str, Any] | None:
        """The stored record of task ``uuid`` (with its ``timeline``), or None."""
        found = await self.store.find(uuid)
        return None if found is None else _expanded(found)

    async def select(self, query: TaskQuery, cap: int) -> list[dict[str, Any]]:
        """The records ``query`` selects over the whole history (at most ``cap`` without a
        ``limit``): the store's rows, where the tasks changed since they were written
        replace them, newest first (or by ``sort_by``), then offset and limit.

        Rows are merged and paged by their ids and sort keys; only the page's records are
        read and decoded, so a deep ``offset`` costs an index range, not its records."""
        limit = cap if query.limit is None else query.limit
        wanted = query.offset + limit
        fresh = self.pending()  # before the store answers: a flush may commit meanwhile
        newer = {
            uuid: task for uuid, task in fresh.items() if query.matches(task)
        }  # fmt: skip
        keys = [(uuid, _task_key(task, query.sort_by)) for uuid, task in newer.items()]
        count = wanted
        while True:
            stored = await self.store.select(query, count)
            kept = [(uuid, key) for uuid, key in stored if uuid not in fresh]
            if len(kept) >= wanted or len(stored) < count:
                break
            count += count - len(kept)  # replaced rows made room: read as many more
        page = _sorted([*keys, *kept], query.sort_by)[query.offset : wanted]
        found = await self.store.records([uuid for uuid, _ in page if uuid not in newer])
        records = []
        for uuid, _ in page:
            if uuid in newer:
                records.append(task_record(newer[uuid]))
            elif uuid in found:  # (else pruned meanwhile)
                records.append(_expanded(found[uuid]))
        return records

    async def flush(self, state: State) -> int:
        """Write the tasks changed since the last flush; how many were written."""
        del state  # the changed tasks are held by object
        if not self._changed:
            return 0
        self._writing, self._changed = self._changed, {}
        self._taken.set()
        try:
            now = time.time()
            rows = [task_row(task, now) for task in self._writing.values()]
            replaced = await self.store.write(rows)
        except BaseException:
            self._failing = True
            kept = {**self._writing, **self._changed}  # written at the next one...
            if len(kept) > MAX_PENDING:  # ...but not without end while the store is away
                logger.warning(
                    "the history %s is behind by %d tasks: the oldest %d are not written",
                    self, len(kept), len(kept) - MAX_PENDING,
                )  # fmt: skip
                kept = dict(list(kept.items())[-MAX_PENDING:])
            self._changed = kept
            raise
        finally:
            self._writing = {}
        self._failing = False
        for row in rows:
            before = replaced.get(row.uuid)
            if before is not None:
                self.totals.count(before, -1)
            name, task_state, runtime = row_key(row)
            if row.name is None and before is not None:  # the store kept the name
                name = before[0]
            self.totals.count((name, task_state, runtime), +1)
        return len(rows)

    async def prune(self) -> int:
        """Apply the retention rules; how many rows went."""
        removed = await self.store.prune(time.time() - self.max_age, self.max_rows)
        self.totals.merge(removed, -1)
        return sum(group.tasks for group in removed)

    async def run(self, state: State) -> None:
        """Flush every ``interval`` seconds and prune every minute, until cancelled (then
        a last flush, and the store is closed)."""
        last_prune = 0.0
        self._writer_runs = True
        try:
            while True:
                # (Not wait_for, which may lose a cancel: see AMQPSubscription.receive.)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                self._wake.clear()
                try:
                    await self.flush(state)
                    if time.monotonic() - last_prune >= PRUNE_EVERY:
                        last_prune = time.monotonic()
                        await self.prune()
                except STORE_ERRORS as exc:
                    logger.warning("the dashboard could not write its history %s: %s", self, exc)
        finally:
            self._writer_runs = False
            self._taken.set()  # a feed waiting for this writer goes on (it checks again)
            with contextlib.suppress(RuntimeError, *STORE_ERRORS):
                await asyncio.shield(self.flush(state))
            await self.store.close()

    async def close(self) -> None:
        """Close the store (a later call opens it again)."""
        await self.store.close()


try:  # what the SQL store raises when its server is away (without the sql extra: none)
    from sqlalchemy.exc import SQLAlchemyError as _StoreError
except ImportError:  # pragma: no cover - exercised only without the extra

    class _StoreError(Exception):  # type: ignore[no-redef]
        """Never raised."""


STORE_ERRORS: tuple[type[Exception], ...] = (
    OSError, sqlite3.Error, _StoreError, ImproperlyConfigured,
)  # fmt: skip
"""What a store raises when it cannot answer (a file it cannot open, a server away)."""


def task_row(task: Task, now: float) -> Row:
    """The task's row; ``updated`` is the time of its latest event (else ``now``)."""
    # Only what is known (most fields are None for most tasks: a third of the record);
    # "root" and "parent" repeat root_id and parent_id, "children" is always empty.
    record = {key: value for key in _STORED if (value := getattr(task, key, None)) is not None}
    hostname = task.worker.hostname if task.worker is not None else None
    if hostname is not None:
        record["worker"] = hostname
    record["timeline"] = list(task.timeline)  # a copy: encoded off the event loop
    updated = task.timestamp if isinstance(task.timestamp, int | float) else now
    found = [task.uuid, task.name, task.args, task.kwargs, task.result, task.exception]
    haystack = "\n".join([str(value) for value in found if value is not None]).lower()
    return Row(
        str(task.uuid), task.name, str(task.state), hostname, float(updated),
        _moment(task.received), _moment(task.started), haystack, record,
    )  # fmt: skip


def row_key(row: Row) -> Key:
    """How :attr:`History.totals` counts ``row`` (as :class:`Tally` counts its task)."""
    runtime = row.record.get("runtime") if row.state in READY_STATES else None
    number = float(runtime) if isinstance(runtime, int | float) else None
    return row.name or "?", row.state, number


def encode_record(record: dict[str, Any]) -> str:
    """A record's JSON text (orjson's when installed: three times faster; what cannot be
    JSON is written as its repr)."""
    if orjson is not None:
        with contextlib.suppress(TypeError):
            return orjson.dumps(record, default=repr).decode()
    return json.dumps(record, default=repr)


def decode_record(text: str) -> dict[str, Any]:
    """The record ``text`` holds."""
    record: dict[str, Any] = orjson.loads(text) if orjson is not None else json.loads(text)
    return record


def _expanded(record: dict[str, Any]) -> dict[str, Any]:
    """A stored record in Flower's shape again: every field, None where unknown."""
    full = {key: record.get(key) for key in TASK_FIELDS}
    full["root"], full["parent"], full["children"] = full["root_id"], full["parent_id"], []
    full["timeline"] = record.get("timeline") or []
    return full


def _moment(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _task_key(task: Task, sort_by: str | None) -> Any:
    """What a task in memory sorts by, as its row would."""
    if sort_by is None:
        return task.timestamp if isinstance(task.timestamp, int | float) else time.time()
    return getattr(task, sort_by.lstrip("-"), None)


def _sorted(keyed: list[tuple[str, Any]], sort_by: str | None) -> list[tuple[str, Any]]:
    """Newest first, or by ``sort_by`` as the stores sort (missing values last, and
    ``-`` reverses the whole order, as the in-memory list does)."""
    if sort_by is None:
        return sorted(keyed, key=lambda item: _number(item[1]), reverse=True)

    def value(item: tuple[str, Any]) -> tuple[bool, Any]:
        return (item[1] is None, item[1] if item[1] is not None else 0)

    return sorted(keyed, key=value, reverse=sort_by.startswith("-"))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def open_history(
    app: Any,
    path: str | Path | None = None,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    max_rows: int = DEFAULT_MAX_ROWS,
    default: str | Path = "celeriac-dashboard.sqlite",
) -> History:
    """The history of ``app``'s dashboard: in the SQLite file ``path`` when one is named;
    else in the app's result database when it is a SQL one (a PostgreSQL ``db+postgresql://``
    or a SQLite ``sqlite:///file`` backend); else in the file ``default``."""
    store: HistoryStore | str | Path = path if path is not None else default
    url = app.result_backend_url if path is None else None
    if url is not None:
        store = _result_database(app, url) or store
    return History(store, max_age=max_age, max_rows=max_rows)


def _result_database(app: Any, url: str) -> HistoryStore | None:
    """A store in the result database at ``url``, or None when it is not a SQL one."""
    try:
        scheme = scheme_of(unprefixed(url))
    except ImproperlyConfigured:
        return None
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from celeriac.engines.options import backend_options  # noqa: PLC0415
        from celeriac.web.history_sql import SQLHistory  # noqa: PLC0415 (needs the sql extra)

        return SQLHistory(url, backend_options(app.conf, url, app.broker_url))
    if scheme == "sqlite":
        from celeriac.engines.sqlite.connection import sqlite_path  # noqa: PLC0415
        from celeriac.web.history_sqlite import SQLiteHistory  # noqa: PLC0415

        try:
            path = sqlite_path(unprefixed(url))
        except ImproperlyConfigured:
            return None
        return SQLiteHistory(path, table=TABLE)
    if scheme.startswith(("mysql", "mariadb", "oracle", "mssql")):
        logger.warning(
            "the dashboard keeps its history in a SQLite file: celeriac's SQL result backend"
            " runs on PostgreSQL only, not %s",
            scheme,
        )
    return None
