"""The live view of ``celeriac events``: workers and tasks of a State, as rich tables."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table

from celeriac.events.state import State, Worker

__all__ = ["TASKS_SHOWN", "render"]

TASKS_SHOWN = 25
"""Latest tasks listed."""

_STATE_STYLES = {"SUCCESS": "green", "FAILURE": "red", "RETRY": "yellow", "REVOKED": "magenta"}


def render(state: State, app: Any, gone: Mapping[str | None, Worker] | None = None) -> Group:
    """The workers table (with ``gone``: those that went offline) and the latest tasks."""
    return Group(_workers(state, app, gone or {}), _tasks(state))


def _workers(state: State, app: Any, gone: Mapping[str | None, Worker]) -> Table:
    table = Table(title=f"celeriac events: {app.broker_url}  ({state.event_count} events)")
    for column in ("worker", "status", "active", "processed", "load", "last heartbeat"):
        table.add_column(column)
    now = time.time()
    shown: dict[str | None, Worker] = dict(gone)
    shown.update(state.workers.items())
    for worker in sorted(shown.values(), key=lambda w: w.hostname or ""):
        name = worker.hostname or ""
        last = f"{now - worker.heartbeats[-1]:.1f} s ago" if worker.heartbeats else "-"
        status = "[green]ONLINE" if worker.alive else "[red]OFFLINE"
        load = " ".join(str(x) for x in worker.loadavg or ())
        table.add_row(name, status, str(worker.active), str(worker.processed), load, last)
    return table


def _tasks(state: State) -> Table:
    table = Table(title=f"tasks ({state.task_count} received)")
    for column in ("uuid", "name", "state", "worker", "time", "info"):
        table.add_column(column, overflow="fold")
    for uuid, task in state.tasks_by_time(limit=TASKS_SHOWN):
        style = _STATE_STYLES.get(task.state, "")
        when = (
            dt.datetime.fromtimestamp(task.timestamp).strftime("%H:%M:%S")
            if task.timestamp
            else "-"
        )
        info = task.result if task.state == "SUCCESS" else task.exception or task.args
        table.add_row(
            uuid,
            task.name or "",
            f"[{style}]{task.state}" if style else task.state,
            task.worker.hostname if task.worker is not None else "",
            when,
            str(info or ""),
        )
    return table
