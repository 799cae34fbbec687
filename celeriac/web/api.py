"""The dashboard's HTTP API: Flower's endpoints and JSON shapes, and a live event stream.

Every handler takes the :class:`~celeriac.web.dashboard.Dashboard` from the request's
app. Bad input gets a 4xx whose ``error`` names the problem: an unknown task (404), a
body that is not JSON or not an object, ``args`` that are not an array, an option
``apply_async`` does not take (400), a body over :data:`MAX_BODY` bytes (413). Actions
(submit, revoke) are refused with 403 where :meth:`Access.refusal` says why.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from celeriac.exceptions import CeleriacError
from celeriac.web.auth import HEALTHCHECK
from celeriac.web.dashboard import Dashboard
from celeriac.web.feed import Feed
from celeriac.web.history import STORE_ERRORS
from celeriac.web.metrics import CONTENT_TYPE_LATEST
from celeriac.web.records import BadQuery, TaskQuery, select_tasks, task_record, worker_record

__all__ = [
    "MAX_BODY",
    "ApiError",
    "dashboard_of",
    "find_tasks",
    "json_response",
    "read_body",
    "read_form",
    "refuse_unless_allowed",
    "routes",
]

MAX_BODY = 1 << 20
"""The largest request body the API reads (1 MiB)."""

DATE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
"""How ``eta`` and a date ``expires`` are written (Flower's format; ISO 8601 works too)."""

logger = logging.getLogger("celeriac.web")

SSE_PING = 15.0
"""Seconds between two keep-alive comments on an idle event stream."""


class ApiError(Exception):
    """An answer other than 200: ``status`` and a message naming the problem."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error_response(exc: ApiError) -> JSONResponse:
    """``{"error": message}`` with the error's status."""
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


def dashboard_of(request: Request) -> Dashboard:
    """The dashboard the request's app serves."""
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


def json_response(data: Any) -> Response:
    """JSON of anything (what JSON cannot say is written as its repr)."""
    body = json.dumps(data, default=repr)
    return Response(body, media_type="application/json")


# --- submitting ---------------------------------------------------------------------------
async def read_body(request: Request) -> dict[str, Any]:
    """The JSON object in the body ({} when empty); :class:`ApiError` names what is wrong."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise ApiError(413, f"request body of {declared} bytes is over the {MAX_BODY} limit")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, f"request body is over the {MAX_BODY} bytes limit")
    if not body.strip():
        return {}
    try:
        options = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "request body is nested too deeply") from None
    if not isinstance(options, dict):
        raise ApiError(400, f"request body must be a JSON object, not {type(options).__name__}")
    return options


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form body (the pages' buttons), bounded by ``MAX_BODY``; the standard
    library reads it (no multipart here)."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, f"form of {len(body)} bytes is over the {MAX_BODY} limit")
    return parse_qs(body.decode("utf-8", "replace"))


def task_arguments(options: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """``args`` and ``kwargs`` taken out of ``options``, checked."""
    args = options.pop("args", [])
    kwargs = options.pop("kwargs", {})
    if not isinstance(args, list):
        raise ApiError(400, f"args must be a JSON array, not {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise ApiError(400, f"kwargs must be a JSON object, not {type(kwargs).__name__}")
    normalize_options(options)
    return args, kwargs


def normalize_options(options: dict[str, Any]) -> None:
    """Dates and numbers of ``eta``, ``countdown`` and ``expires`` from their JSON text."""
    try:
        if "eta" in options:
            options["eta"] = _date(options["eta"])
        if "countdown" in options:
            options["countdown"] = float(options["countdown"])
        if "expires" in options:
            try:
                options["expires"] = float(options["expires"])
            except ValueError:
                options["expires"] = _date(options["expires"])
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"invalid option: {exc}") from None


def _date(value: Any) -> dt.datetime:
    text = str(value)
    try:
        return dt.datetime.strptime(text, DATE_FORMAT)
    except ValueError:
        return dt.datetime.fromisoformat(text)


def refuse_unless_allowed(request: Request) -> None:
    """403 naming the reason when the request may not run an action."""
    reason = dashboard_of(request).access.refusal(request.scope)
    if reason is not None:
        raise ApiError(403, reason)


async def submit(request: Request, name: str, registered: bool) -> Response:
    """Publish task ``name`` with the body's args, kwargs and options."""
    dashboard = dashboard_of(request)
    refuse_unless_allowed(request)
    app = dashboard.app
    task = app.tasks.get(name)
    if registered and task is None:
        raise ApiError(404, f"Unknown task '{name}'")
    options = await read_body(request)
    args, kwargs = task_arguments(options)
    try:
        publish = app.build_request(name, args, kwargs, options, task)
    except (TypeError, ValueError, AttributeError, KeyError, CeleriacError) as exc:
        raise ApiError(400, f"cannot send {name}: {exc}") from None
    try:
        await app.apublish([publish])
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not take {name}: {exc}") from None
    response: dict[str, Any] = {"task-id": publish.message.id}
    if app.result_backend_url is not None:
        try:
            meta = await app.AsyncResult(publish.message.id).ameta()
        except (OSError, CeleriacError) as exc:
            # Published: an error now would have the client send it again. No state, then.
            logger.warning("state of %s unread from the result backend: %s", name, exc)
        else:
            response["state"] = meta.get("status")
    return json_response(response)


async def async_apply(request: Request) -> Response:
    """``POST /api/task/async-apply/<name>``: publish a registered task."""
    return await submit(request, request.path_params["name"], registered=True)


async def send_task(request: Request) -> Response:
    """``POST /api/task/send-task/<name>``: publish by name (the worker must know it)."""
    return await submit(request, request.path_params["name"], registered=False)


# --- results and history ------------------------------------------------------------------
def safe_result(value: Any) -> Any:
    """``value`` if JSON can carry it, else its repr (Flower's rule)."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


async def task_result(request: Request) -> Response:
    """``GET /api/task/result/<id>[?timeout=s]``: state, and result once ready."""
    app = dashboard_of(request).app
    if app.result_backend_url is None:
        raise ApiError(503, "no result backend is configured")
    task_id = request.path_params["task_id"]
    timeout = _seconds(request.query_params.get("timeout"))
    result = app.AsyncResult(task_id)
    try:
        meta = await _read_result(result, timeout)
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the result backend did not answer: {exc}") from None
    response: dict[str, Any] = {"task-id": task_id, "state": meta.get("status")}
    if meta.get("status") in ("SUCCESS", "FAILURE", "REVOKED"):
        response["result"] = safe_result(result.result)
        if meta.get("status") == "FAILURE":
            response["traceback"] = result.traceback
    return json_response(response)


async def _read_result(result: Any, timeout: float | None) -> dict[str, Any]:
    """The stored meta, after waiting up to ``timeout`` s for the task to finish."""
    if timeout:
        try:
            await result.aget(timeout=timeout, propagate=False)
        except builtins.TimeoutError:
            pass  # answer with the state it has now
    meta: dict[str, Any] = await result.ameta()
    return meta


def _seconds(value: str | None) -> float | None:
    if value in (None, ""):
        return None
    try:
        seconds = float(str(value))
    except ValueError:
        raise ApiError(400, f"timeout must be a number of seconds, not {value!r}") from None
    if not 0 <= seconds <= 3600:
        raise ApiError(400, f"timeout must be between 0 and 3600 seconds, not {seconds}")
    return seconds


async def task_info(request: Request) -> Response:
    """``GET /api/task/info/<id>``: what events said of the task."""
    task_id = request.path_params["task_id"]
    feed = dashboard_of(request).feed
    task = feed.state.tasks.get(task_id)
    if task is not None:
        return json_response(task_record(task))
    stored = await feed.history.find(task_id) if feed.history is not None else None
    if stored is None:
        raise ApiError(404, f"Unknown task '{task_id}'")
    stored.pop("timeline", None)
    return json_response(stored)


async def list_tasks(request: Request) -> Response:
    """``GET /api/tasks``: tasks by id, filtered and sorted as Flower's."""
    try:
        query = TaskQuery.from_params(request.query_params)
    except BadQuery as exc:
        raise ApiError(400, str(exc)) from None
    records = await find_tasks(dashboard_of(request).feed, query)
    return json_response({record["uuid"]: record for record in records})


async def find_tasks(feed: Feed, query: TaskQuery) -> list[dict[str, Any]]:
    """The records ``query`` selects: with a filter and a history, over the whole history
    (at most ``--max-tasks`` of them without a ``limit``); else over the tasks in memory.
    When the history cannot answer, memory does (and the log says why)."""
    history = feed.history
    if history is not None and query.filtered:
        try:
            records = await history.select(query, cap=feed.state.max_tasks_in_memory)
        except STORE_ERRORS as exc:
            logger.warning("the task history %s did not answer, memory does: %s", history, exc)
        else:
            for record in records:
                record.pop("timeline", None)
            return records
    return [task_record(task) for task in select_tasks(feed.state, query)]


async def task_types(request: Request) -> Response:
    """``GET /api/task/types``: every task name seen."""
    return json_response({"task-types": dashboard_of(request).feed.state.task_types()})


async def series(request: Request) -> Response:
    """``GET /api/series``: tasks finished, failed and run-time quantiles per minute."""
    feed = dashboard_of(request).feed
    points = [dataclasses.asdict(point) for point in feed.series.points()]
    return json_response({"interval": feed.series.interval, "points": points})


async def list_workers(request: Request) -> Response:
    """``GET /api/workers[?workername=][&status=true][&refresh=true]``: the workers events
    told of, each with its latest ``inspect`` replies (asked for again with ``refresh``)."""
    feed = dashboard_of(request).feed
    params = request.query_params
    name = params.get("workername") or None
    inspections = feed.inspections
    if _flag(params.get("refresh")) and inspections is not None:
        try:
            await inspections.refresh(name)
        except (ConnectionError, OSError, CeleriacError) as exc:
            raise ApiError(503, f"Failed to update workers: {exc}") from None
    workers = dict(feed.state.workers.items())
    if name:
        if name not in workers:
            raise ApiError(404, f"Unknown worker '{name}'")
        workers = {name: workers[name]}
    if _flag(params.get("status")):
        return json_response({host: worker.alive for host, worker in workers.items()})
    inspected = inspections.workers if inspections is not None else {}
    return json_response({
        host: {**worker_record(worker), **inspected.get(host, {})}
        for host, worker in workers.items()
    })  # fmt: skip


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes", "on")


async def revoke(request: Request) -> Response:
    """``POST /api/task/revoke/<id>[?terminate=true&signal=SIGTERM]``: workers skip the
    task; with ``terminate``, the worker running it kills it with ``signal``."""
    dashboard = dashboard_of(request)
    refuse_unless_allowed(request)
    task_id = request.path_params["task_id"]
    terminate = _flag(request.query_params.get("terminate"))
    signal = request.query_params.get("signal") or "SIGTERM"
    try:
        await dashboard.app.arevoke(task_id, terminate=terminate, signal=signal)
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not take the revoke: {exc}") from None
    return json_response({"message": f"Revoked '{task_id}'"})


# --- live ---------------------------------------------------------------------------------
async def event_stream(request: Request) -> Response:
    """``GET /api/events[?type=task-]``: every event as a server-sent event, as it comes."""
    prefix = request.query_params.get("type") or ""
    feed = dashboard_of(request).feed
    return StreamingResponse(
        _sse(feed, prefix), media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )  # fmt: skip


async def _sse(feed: Any, prefix: str) -> AsyncIterator[str]:
    async with feed.subscribe() as queue:
        yield ": connected\n\n"
        while True:
            try:
                async with asyncio.timeout(SSE_PING):  # (not wait_for: see AMQPSubscription)
                    event = await queue.get()
            except builtins.TimeoutError:
                yield ": ping\n\n"
                continue
            type = str(event.get("type", ""))
            if type.startswith(prefix):
                yield f"event: {type}\ndata: {json.dumps(event, default=repr)}\n\n"


async def healthcheck(request: Request) -> Response:
    """``GET /healthcheck``: ``OK`` while the dashboard serves (Flower's liveness probe)."""
    del request
    return PlainTextResponse("OK")


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus' text format."""
    return Response(dashboard_of(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    """The API's routes."""
    return [
        Route("/api/task/async-apply/{name:path}", async_apply, methods=["POST"]),
        Route("/api/task/send-task/{name:path}", send_task, methods=["POST"]),
        Route("/api/task/result/{task_id}", task_result, methods=["GET"]),
        Route("/api/task/info/{task_id}", task_info, methods=["GET"]),
        Route("/api/task/revoke/{task_id}", revoke, methods=["POST"]),
        Route("/api/task/types", task_types, methods=["GET"]),
        Route("/api/tasks", list_tasks, methods=["GET"]),
        Route("/api/workers", list_workers, methods=["GET"]),
        Route("/api/series", series, methods=["GET"]),
        Route("/api/events", event_stream, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(HEALTHCHECK, healthcheck, methods=["GET"]),
    ]
