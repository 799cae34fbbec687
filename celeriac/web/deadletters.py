"""Dead letters in the dashboard: the messages workers set aside, browsed and requeued.

A worker sets aside a message it cannot run (undecodable, an unregistered task, over the
size limit) with the reason, in the broker's dead-letter store (see ``celeriac dead``).
``GET /api/dead-letters`` lists them, oldest first; ``POST /api/dead-letters/requeue``
puts those named (``{"ids": [...]}``) or all (``{"all": true}``) back on their queues, as
fresh messages. The ``/dead-letters`` page shows the same list with a requeue button per
message and one for all: a form post, an action like any other (credentials, same origin).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from celeriac.exceptions import CeleriacError
from celeriac.transport import DeadLetter
from celeriac.web.api import (
    ApiError,
    dashboard_of,
    json_response,
    read_body,
    read_form,
    refuse_unless_allowed,
)
from celeriac.web.pages import render

__all__ = ["DEFAULT_LIMIT", "letter_record", "routes"]

DEFAULT_LIMIT = 100
"""Dead letters listed when ``limit`` is not given."""

MAX_LIMIT = 10_000
"""The most one list asks the broker for."""


def letter_record(letter: DeadLetter) -> dict[str, Any]:
    """One dead letter as the API shows it: where, why, when, and which task it carried."""
    headers = letter.envelope.headers
    return {
        "id": letter.id,
        "queue": letter.queue,
        "reason": letter.reason,
        "dead_at": letter.dead_at,
        "task": headers.get("task"),
        "task_id": headers.get("id"),
        "argsrepr": headers.get("argsrepr"),
        "kwargsrepr": headers.get("kwargsrepr"),
        "size": len(letter.envelope.body),
    }


async def _letters(request: Request, limit: int) -> list[DeadLetter]:
    transport = await dashboard_of(request).app.aget_transport()
    try:
        letters: list[DeadLetter] = await transport.list_dead(limit)
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not list its dead letters: {exc}") from None
    return letters


async def _requeue(request: Request, ids: list[str] | None) -> int:
    transport = await dashboard_of(request).app.aget_transport()
    try:
        moved: int = await transport.requeue_dead(ids)
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not requeue the dead letters: {exc}") from None
    return moved


def _limit(request: Request) -> int:
    value = request.query_params.get("limit") or str(DEFAULT_LIMIT)
    if not value.isdigit() or not 0 <= int(value) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 0 to {MAX_LIMIT}, not {value!r}")
    return int(value)


async def list_letters(request: Request) -> Response:
    """``GET /api/dead-letters[?limit=100]``: the dead letters, oldest first."""
    return json_response(
        [letter_record(letter) for letter in await _letters(request, _limit(request))]
    )


async def requeue_letters(request: Request) -> Response:
    """``POST /api/dead-letters/requeue`` with ``{"ids": [...]}`` or ``{"all": true}``."""
    refuse_unless_allowed(request)
    body = await read_body(request)
    ids = body.get("ids")
    if body.get("all") is True and ids is None:
        return json_response({"requeued": await _requeue(request, None)})
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, 'give "ids" (a non-empty list of dead-letter ids) or "all": true')
    return json_response({"requeued": await _requeue(request, ids)})


async def page(request: Request) -> Response:
    """The dead letters, with a requeue button each and one for all."""
    letters = [letter_record(letter) for letter in await _letters(request, _limit(request))]
    for letter in letters:
        moment = dt.datetime.fromtimestamp(letter["dead_at"])
        letter["when"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    requeued = request.query_params.get("requeued")
    return render(request, "dead", "dead", letters=letters, requeued=requeued)


async def requeue_form(request: Request) -> Response:
    """The page's form: requeue the ``id`` fields, or all with ``all``; back to the page."""
    refuse_unless_allowed(request)
    form = await read_form(request)
    ids = form.get("id", [])
    if not ids and "all" not in form:
        raise ApiError(400, "name the dead letters to requeue (id) or ask for all")
    moved = await _requeue(request, ids or None)
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}/dead-letters?requeued={moved}", status_code=303)


def routes() -> list[Route]:
    """The dead letters' API and page routes."""
    return [
        Route("/api/dead-letters", list_letters, methods=["GET"]),
        Route("/api/dead-letters/requeue", requeue_letters, methods=["POST"]),
        Route("/dead-letters", page, methods=["GET"]),
        Route("/dead-letters/requeue", requeue_form, methods=["POST"]),
    ]
