"""Steering workers from the dashboard: Flower's control endpoints, over remote control.

Each endpoint sends one remote-control command to the worker it names (``destination``)
and waits up to :data:`REPLY_TIMEOUT` for its answer, as Flower does:

=============================================  ==========================================
``POST /api/worker/shutdown/<name>``           ``shutdown`` (no answer awaited)
``POST /api/worker/pool/restart/<name>``       ``pool_restart`` (refused: not offered)
``POST /api/worker/pool/grow/<name>?n=1``      ``pool_grow``
``POST /api/worker/pool/shrink/<name>?n=1``    ``pool_shrink``
``POST /api/worker/pool/autoscale/<name>``     ``autoscale`` with ``min`` and ``max``
``POST /api/worker/queue/add-consumer/<name>`` ``add_consumer`` with ``queue``
``POST /api/worker/queue/cancel-consumer/…``   ``cancel_consumer`` with ``queue``
``POST /api/task/timeout/<task>``              ``time_limit`` with ``workername``, ``soft``,
                                               ``hard``
``POST /api/task/rate-limit/<task>``           ``rate_limit`` with ``workername``,
                                               ``ratelimit``
=============================================  ==========================================

The workers page's buttons post to ``/workers/<name>/control`` (pool ±1, add or cancel a
consumer, autoscale bounds, a task's rate or time limits, shutdown) and come back to the page
with the worker's answer. A worker is known when events told of it (404 otherwise). A
worker's refusal is a 403 naming its reason, as Flower answers; no answer in time is a 504.
These are actions: they follow the dashboard's credential and same-origin rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from celeriac.control.client import flatten_reply
from celeriac.exceptions import CeleriacError
from celeriac.web.api import (
    ApiError,
    dashboard_of,
    json_response,
    read_form,
    refuse_unless_allowed,
)

__all__ = ["REPLY_TIMEOUT", "routes"]

REPLY_TIMEOUT = 2.0
"""Seconds a worker has to answer a command (Flower waits 1 s; a worker busy reaping a
shrunk pool may need longer)."""


def _known_worker(request: Request, name: str | None) -> str:
    if not name or name not in dashboard_of(request).feed.state.workers:
        raise ApiError(404, f"Unknown worker '{name}'")
    return name


def _number(request: Request, key: str, kind: type, default: Any = None) -> Any:
    return _parse(key, request.query_params.get(key), kind, default)


def _parse(key: str, value: str | None, kind: type, default: Any = None) -> Any:
    """``value`` as a ``kind`` (``default`` when empty; required when that is None)."""
    if value in (None, ""):
        if default is None:
            raise ApiError(400, f"{key} is required")
        return default
    try:
        return kind(value)
    except ValueError:
        raise ApiError(400, f"{key} must be a {kind.__name__}, not {value!r}") from None


async def _command(
    request: Request,
    worker: str,
    command: str,
    arguments: dict[str, Any],
    success: Callable[[dict[str, Any]], str],
    failure: str,
) -> Response:
    """Send ``command`` to ``worker``; its ``ok`` answer as ``success(answer)``, else 403."""
    message = await _ask(request, worker, command, arguments, success, failure)
    return json_response({"message": message})


async def _ask(
    request: Request,
    worker: str,
    command: str,
    arguments: dict[str, Any],
    success: Callable[[dict[str, Any]], str],
    failure: str,
) -> str:
    """Send ``command`` to ``worker``: ``success(answer)``, or an ApiError naming why not."""
    control = dashboard_of(request).app.control
    try:
        replies = await control.abroadcast(
            command, arguments, destination=[worker], reply=True, timeout=REPLY_TIMEOUT
        )
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not carry the command: {exc}") from None
    answer = flatten_reply(replies or []).get(worker)
    if answer is None:
        raise ApiError(504, f"worker '{worker}' did not answer within {REPLY_TIMEOUT:g} s")
    if isinstance(answer, dict) and "ok" in answer:
        return success(answer)
    reason = answer.get("error", "Unknown reason") if isinstance(answer, dict) else answer
    raise ApiError(403, f"{failure}: {reason}")


async def shutdown(request: Request) -> Response:
    """Ask the worker to shut down (warm)."""
    refuse_unless_allowed(request)
    worker = _known_worker(request, request.path_params["name"])
    control = dashboard_of(request).app.control
    await control.abroadcast("shutdown", destination=[worker])
    return json_response({"message": "Shutting down!"})


async def pool_restart(request: Request) -> Response:
    """Flower's pool restart: the worker answers whether it offers it."""
    refuse_unless_allowed(request)
    worker = _known_worker(request, request.path_params["name"])
    return await _command(
        request, worker, "pool_restart", {"reload": False},
        lambda _: f"Restarting '{worker}' worker's pool",
        f"Failed to restart the '{worker}' pool",
    )  # fmt: skip


async def _resize(request: Request, command: str, verb: str) -> Response:
    """``pool_grow`` or ``pool_shrink`` by ``n`` (1), with Flower's messages."""
    refuse_unless_allowed(request)
    worker = _known_worker(request, request.path_params["name"])
    n = _number(request, "n", int, 1)
    return await _command(
        request, worker, command, {"n": n},
        lambda _: f"{verb.capitalize()}ing '{worker}' worker's pool by {n}",
        f"Failed to {verb} '{worker}' worker's pool",
    )  # fmt: skip


async def pool_grow(request: Request) -> Response:
    """Add ``n`` processes to the worker's pool."""
    return await _resize(request, "pool_grow", "grow")


async def pool_shrink(request: Request) -> Response:
    """Take ``n`` processes from the worker's pool."""
    return await _resize(request, "pool_shrink", "shrink")


async def pool_autoscale(request: Request) -> Response:
    """Set the worker's autoscale bounds."""
    refuse_unless_allowed(request)
    worker = _known_worker(request, request.path_params["name"])
    low, high = _number(request, "min", int), _number(request, "max", int)
    return await _command(
        request, worker, "autoscale", {"min": low, "max": high},
        lambda _: f"Autoscaling '{worker}' worker (min={low}, max={high})",
        f"Failed to autoscale '{worker}' worker",
    )  # fmt: skip


def _queue(request: Request) -> str:
    queue = request.query_params.get("queue")
    if not queue:
        raise ApiError(400, "queue is required")
    return queue


async def _consumer(request: Request, command: str, failure: str) -> Response:
    """``add_consumer`` or ``cancel_consumer`` of ``queue``; ``failure`` is formatted with
    the queue and the worker (Flower's messages)."""
    refuse_unless_allowed(request)
    worker = _known_worker(request, request.path_params["name"])
    queue = _queue(request)
    return await _command(
        request, worker, command, {"queue": queue}, lambda answer: str(answer["ok"]),
        failure.format(queue=queue, worker=worker),
    )  # fmt: skip


async def add_consumer(request: Request) -> Response:
    """Have the worker consume ``queue`` too."""
    return await _consumer(
        request, "add_consumer", "Failed to add '{queue}' consumer to '{worker}' worker"
    )


async def cancel_consumer(request: Request) -> Response:
    """Have the worker stop consuming ``queue``."""
    return await _consumer(
        request, "cancel_consumer", "Failed to cancel '{queue}' consumer from '{worker}' worker"
    )


def _known_task(request: Request, name: str | None = None) -> str:
    name = str(request.path_params["taskname"] if name is None else name)
    if not name or name not in dashboard_of(request).app.tasks:
        raise ApiError(404, f"Unknown task '{name}'")
    return name


async def task_timeout(request: Request) -> Response:
    """Set a task's soft and hard time limits on one worker."""
    refuse_unless_allowed(request)
    task = _known_task(request)
    worker = _known_worker(request, request.query_params.get("workername"))
    soft, hard = (request.query_params.get(key) for key in ("soft", "hard"))
    limits = {
        "soft": _number(request, "soft", float) if soft else None,
        "hard": _number(request, "hard", float) if hard else None,
    }
    return await _command(
        request, worker, "time_limit", {"task_name": task, **limits},
        lambda answer: str(answer["ok"]), "Failed to set timeouts",
    )  # fmt: skip


async def task_rate_limit(request: Request) -> Response:
    """Set a task's rate limit (``10/m``, ``5/s``...) on one worker."""
    refuse_unless_allowed(request)
    task = _known_task(request)
    worker = _known_worker(request, request.query_params.get("workername"))
    rate = request.query_params.get("ratelimit")
    if not rate:
        raise ApiError(400, "ratelimit is required")
    return await _command(
        request, worker, "rate_limit", {"task_name": task, "rate_limit": rate},
        lambda answer: str(answer["ok"]), "Failed to set rate limit",
    )  # fmt: skip


_Command = tuple[str, dict[str, Any], str]
"""A remote-control command, its arguments, and what to say when the worker refuses it."""


def _form_command(request: Request, action: str, form: dict[str, list[str]]) -> _Command:
    """The command a workers-page button stands for, from the fields posted with it."""

    def field(key: str) -> str:
        return (form.get(key) or [""])[0].strip()

    if action in ("grow", "shrink"):
        return f"pool_{action}", {"n": 1}, f"Failed to {action} the pool"
    if action in ("add-consumer", "cancel-consumer"):
        if not field("queue"):
            raise ApiError(400, "name the queue")
        verb = action.partition("-")[0]
        return f"{verb}_consumer", {"queue": field("queue")}, f"Failed to {verb} the consumer"
    if action == "autoscale":
        bounds = {key: _parse(key, field(key), int) for key in ("min", "max")}
        return "autoscale", bounds, "Failed to autoscale"
    if action == "rate-limit":
        task = _known_task(request, field("task"))
        if not field("rate"):
            raise ApiError(400, "give the rate limit (10/m, 5/s; 0 removes it)")
        rate = {"task_name": task, "rate_limit": field("rate")}
        return "rate_limit", rate, "Failed to set the rate limit"
    if action == "time-limit":
        task = _known_task(request, field("task"))
        limits = {key: _parse(key, field(key), float, 0.0) or None for key in ("soft", "hard")}
        return "time_limit", {"task_name": task, **limits}, "Failed to set the time limits"
    raise ApiError(400, f"unknown action {action!r}")


async def worker_form(request: Request) -> Response:
    """The workers page's buttons: ``action`` (grow, shrink, add-consumer, cancel-consumer,
    autoscale, rate-limit, time-limit, shutdown) on the worker in the path, then back to the
    page with what it answered."""
    refuse_unless_allowed(request)
    worker = _known_worker(request, request.path_params["name"])
    form = await read_form(request)
    action = (form.get("action") or [""])[0]
    root = request.scope.get("root_path", "")
    try:
        if action == "shutdown":
            await dashboard_of(request).app.control.abroadcast("shutdown", destination=[worker])
            outcome = {"done": f"Shutting down {worker}"}
        else:
            command, arguments, failure = _form_command(request, action, form)
            done = await _ask(request, worker, command, arguments, lambda a: str(a["ok"]), failure)
            outcome = {"done": f"{worker}: {done}"}
    except ApiError as exc:
        outcome = {"failed": f"{worker}: {exc}"}
    return RedirectResponse(f"{root}/workers?{urlencode(outcome)}", status_code=303)


def routes() -> list[Route]:
    """Flower's worker and task control routes."""
    post = ["POST"]
    return [
        Route("/api/worker/shutdown/{name}", shutdown, methods=post),
        Route("/api/worker/pool/restart/{name}", pool_restart, methods=post),
        Route("/api/worker/pool/grow/{name}", pool_grow, methods=post),
        Route("/api/worker/pool/shrink/{name}", pool_shrink, methods=post),
        Route("/api/worker/pool/autoscale/{name}", pool_autoscale, methods=post),
        Route("/api/worker/queue/add-consumer/{name}", add_consumer, methods=post),
        Route("/api/worker/queue/cancel-consumer/{name}", cancel_consumer, methods=post),
        Route("/api/task/timeout/{taskname:path}", task_timeout, methods=post),
        Route("/api/task/rate-limit/{taskname:path}", task_rate_limit, methods=post),
        Route("/workers/{name}/control", worker_form, methods=post),
    ]
