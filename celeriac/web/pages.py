"""The dashboard's pages, rendered on the server (Jinja2 templates, no build step).

Each page has a ``live`` section; ``static/live.js`` listens to ``/api/events`` and, at
most twice a second while events come, fetches the same page with ``?fragment=live`` and
swaps that section in, so what the page shows comes from one place: these handlers.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from celeriac.web.api import ApiError, dashboard_of, find_tasks
from celeriac.web.charts import Point, line_chart
from celeriac.web.history import restore_task
from celeriac.web.records import BadQuery, TaskQuery, select_tasks

__all__ = ["PAGE_SIZE", "RECENT_FAILURES", "routes"]

PAGE_SIZE = 100
"""Tasks one page of the task list shows."""

RECENT_FAILURES = 10
"""Failed tasks the overview lists."""

PRETTY_WIDTH = 80
"""Arguments longer than this are shown indented."""

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=select_autoescape(["html"]),
)


def _when(timestamp: float | None) -> str:
    """A UTC time of day, or an empty string."""
    if not timestamp:
        return ""
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _pretty(value: Any) -> str:
    """Long JSON text indented (short stays on one line), anything else as it is."""
    if value is None:
        return ""
    text = str(value)
    if len(text) <= PRETTY_WIDTH:
        return text
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def _duration(seconds: float | None) -> str:
    """``85 µs``, ``12.3 ms`` or ``4.56 s``; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


_TEMPLATES.filters["when"] = _when
_TEMPLATES.filters["duration"] = _duration
_TEMPLATES.filters["pretty"] = _pretty


def render(request: Request, template: str, page: str, **context: Any) -> Response:
    """The page, or only its live section when asked with ``?fragment=live``."""
    fragment = request.query_params.get("fragment") == "live"
    name = f"{template}.html"
    html = _TEMPLATES.get_template(name).render(
        page=page, fragment=fragment, root=request.scope.get("root_path", ""), **context
    )
    return HTMLResponse(html)


def _charts(points: list[Point]) -> dict[str, Any]:
    """The overview's two charts of the last hour."""
    finished = line_chart(
        "Tasks finished per minute", points,
        [("succeeded", lambda point: point.succeeded), ("failed", lambda point: point.failed)],
        unit=lambda top: f"{top:,.0f} / min",
    )  # fmt: skip
    runtime = line_chart(
        "Run time p50, p95, p99 per minute", points,
        [("p50", lambda point: point.p50), ("p95", lambda point: point.p95),
         ("p99", lambda point: point.p99)],
        unit=_duration,
    )  # fmt: skip
    last = points[-1] if points else None
    return {"finished_chart": finished, "runtime_chart": runtime, "last_minute": last}


async def overview(request: Request) -> Response:
    """Counts by state, workers up, the last hour's charts, recent failures."""
    feed = dashboard_of(request).feed
    state = feed.state
    failures = select_tasks(state, TaskQuery(state="FAILURE", limit=RECENT_FAILURES))
    totals = feed.totals
    scope = "in the history" if feed.history is not None else "in memory (no history)"
    return render(
        request, "overview", "overview",
        counts=totals.by_state(), scope=scope,
        workers_up=sum(1 for _ in state.alive_workers()),
        workers_known=len(state.workers),
        failures=failures, events=state.event_count, names=totals.by_name(),
        connected=feed.connected, **_charts(feed.series.points()),
    )  # fmt: skip


async def workers(request: Request) -> Response:
    """Each worker events told of."""
    dashboard = dashboard_of(request)
    state = dashboard.feed.state
    rows = sorted(state.workers.values(), key=lambda worker: str(worker.hostname))
    params = request.query_params
    task_names = sorted(name for name in dashboard.app.tasks if not name.startswith("celery."))
    return render(
        request, "workers", "workers", workers=rows, task_names=task_names,
        done=params.get("done"), failed=params.get("failed"),
    )  # fmt: skip


async def tasks(request: Request) -> Response:
    """The task list, searched by id/name/args (``search``), ``state`` and ``taskname``:
    with a filter and a history, over the whole history."""
    feed = dashboard_of(request).feed
    params = {**request.query_params, "limit": str(PAGE_SIZE)}
    try:
        query = TaskQuery.from_params(params)
    except BadQuery as exc:
        raise ApiError(400, str(exc)) from None
    if feed.history is not None and query.filtered:  # over the whole history
        shown = [restore_task(record) for record in await find_tasks(feed, query)]
    else:
        shown = select_tasks(feed.state, query)
    return render(
        request, "tasks", "tasks", tasks=shown, query=query, names=feed.state.task_types(),
    )  # fmt: skip


async def task_detail(request: Request) -> Response:
    """One task: arguments, result, traceback and the timeline of its events."""
    task_id = request.path_params["task_id"]
    feed = dashboard_of(request).feed
    task = feed.state.tasks.get(task_id)
    if task is None and feed.history is not None:  # older than what memory holds
        stored = await feed.history.find(task_id)
        task = restore_task(stored) if stored is not None else None
    if task is None:
        html = _TEMPLATES.get_template("missing.html").render(
            page="tasks", task_id=task_id, root=request.scope.get("root_path", "")
        )
        return HTMLResponse(html, status_code=404)
    return render(request, "task", "tasks", task=task)


def routes() -> list[Route]:
    """The pages' routes."""
    return [
        Route("/", overview, methods=["GET"]),
        Route("/workers", workers, methods=["GET"]),
        Route("/tasks", tasks, methods=["GET"]),
        Route("/task/{task_id}", task_detail, methods=["GET"]),
    ]
