"""Schedules in the dashboard: the app's periodic tasks, when each last ran and runs next,
and which beat holds the lease.

The entries are the app's own (``beat_schedule`` and ``add_periodic_task``); the last
runs and the lease come from the store every beat of the app shares
(:func:`~celeriac.beat.stores.store_for_app`), read afresh for each request. A scheduler
of another kind (``-S module:Class``) keeps its own state, which the dashboard does not
read. ``GET /api/schedules`` answers in JSON; ``/schedules`` is the page.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from celeriac.beat.entry import Entry, entries_from_app
from celeriac.beat.stores import store_for_app
from celeriac.exceptions import CeleriacError, ImproperlyConfigured
from celeriac.web.api import ApiError, dashboard_of, json_response
from celeriac.web.pages import render

__all__ = ["ScheduleRow", "Schedules", "read_schedules", "routes"]


@dataclass
class ScheduleRow:
    """One periodic task as the page shows it."""

    name: str
    task: str
    schedule: str
    args: str
    kwargs: str
    last_run: float | None
    next_run: float


@dataclass
class Schedules:
    """The app's periodic tasks and the beat that sends them now (None: no beat holds it)."""

    holder: str | None
    entries: list[ScheduleRow]


def _row(entry: Entry, last: float | None, now: dt.datetime) -> ScheduleRow:
    previous = dt.datetime.fromtimestamp(last, dt.UTC) if last is not None else None
    upcoming = (
        entry.schedule.next_run(previous, now)
        if previous is not None
        else entry.schedule.first_run(now)
    )
    return ScheduleRow(
        name=entry.name,
        task=entry.task,
        schedule=repr(entry.schedule),
        args=repr(entry.args),
        kwargs=repr(dict(entry.kwargs)),
        last_run=last,
        next_run=upcoming.timestamp(),
    )


async def read_schedules(app: Any) -> Schedules:
    """The entries with their last and next runs, and the lease holder, from the store."""
    try:
        app.finalize()  # runs on_after_configure, where add_periodic_task is often called
        entries = entries_from_app(app)
        store = store_for_app(app)
    except ImproperlyConfigured as exc:
        raise ApiError(400, f"the app's schedule cannot be read: {exc}") from None
    try:
        await store.connect()
        try:
            last_runs = await store.load()
            holder = await store.lease_holder()
        finally:
            await store.close()
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the beat store {store.url} did not answer: {exc}") from None
    now = dt.datetime.now(dt.UTC)
    rows = [_row(entry, last_runs.get(entry.name), now) for entry in entries]
    return Schedules(holder, rows)


async def list_schedules(request: Request) -> Response:
    """``GET /api/schedules``: ``{"holder": ..., "entries": [...]}``."""
    found = await read_schedules(dashboard_of(request).app)
    entries = [vars(row) for row in found.entries]
    return json_response({"holder": found.holder, "entries": entries})


async def page(request: Request) -> Response:
    """The periodic tasks and the beat holding the lease."""
    found = await read_schedules(dashboard_of(request).app)
    return render(request, "schedules", "schedules", holder=found.holder, entries=found.entries)


def routes() -> list[Route]:
    """The schedules' API and page routes."""
    return [
        Route("/api/schedules", list_schedules, methods=["GET"]),
        Route("/schedules", page, methods=["GET"]),
    ]
