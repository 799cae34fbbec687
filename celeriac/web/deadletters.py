"""Dead letters in the dashboard: the messages workers set aside, browsed, requeued, purged.

A worker sets aside a message it cannot run (undecodable, an unregistered task, over the
size limit) with the reason, in the broker's dead-letter store (see ``celeriac dead``).
``GET /api/dead-letters`` lists them, oldest first; ``POST /api/dead-letters/requeue``
puts those named (``{"ids": [...]}``) or all (``{"all": true}``) back on their queues, as
fresh messages; ``POST /api/dead-letters/purge`` (same body) deletes them for good. The
``/dead-letters`` page shows the same list with requeue and purge buttons per message and
for all (purging asks for confirmation first): form posts, actions like any other
(credentials, same origin).
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


async def _act(request: Request, verb: str, ids: list[str] | None) -> int:
    """``requeue`` or ``purge`` the dead letters ``ids`` (None: all); how many."""
    transport = await dashboard_of(request).app.aget_transport()
    act = transport.requeue_dead if verb == "requeue" else transport.purge_dead
    try:
        return int(await act(ids))
    except (OSError, CeleriacError) as exc:
        raise ApiError(503, f"the broker did not {verb} the dead letters: {exc}") from None


def _chosen(body: dict[str, Any], verb: str) -> list[str] | None:
    """The ids an API body names, or None for ``{"all": true}``; 400 otherwise."""
    ids = body.get("ids")
    if body.get("all") is True and ids is None:
        return None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, f'give "ids" (a non-empty list of dead-letter ids to {verb})'
                            ' or "all": true')  # fmt: skip
    return ids


def _chosen_in_form(form: dict[str, list[str]], verb: str) -> list[str] | None:
    """The ``id`` fields of a page's form, or None with ``all``; 400 when neither."""
    ids = form.get("id", [])
    if not ids and "all" not in form:
        raise ApiError(400, f"name the dead letters to {verb} (id) or ask for all")
    return ids or None


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
    return await _api_action(request, "requeue", "requeued")


async def purge_letters(request: Request) -> Response:
    """``POST /api/dead-letters/purge`` with ``{"ids": [...]}`` or ``{"all": true}``."""
    return await _api_action(request, "purge", "purged")


async def _api_action(request: Request, verb: str, done: str) -> Response:
    refuse_unless_allowed(request)
    ids = _chosen(await read_body(request), verb)
    return json_response({done: await _act(request, verb, ids)})


async def page(request: Request) -> Response:
    """The dead letters, with a requeue button each and one for all."""
    letters = [letter_record(letter) for letter in await _letters(request, _limit(request))]
    for letter in letters:
        moment = dt.datetime.fromtimestamp(letter["dead_at"])
        letter["when"] = moment.strftime("%Y-%m-%d %H:%M:%S")
    done = {key: request.query_params.get(key) for key in ("requeued", "purged")}
    return render(request, "dead", "dead", letters=letters, **done)


async def requeue_form(request: Request) -> Response:
    """The page's form: requeue the ``id`` fields, or all with ``all``; back to the page."""
    return await _form_action(request, "requeue", "requeued")


async def purge_form(request: Request) -> Response:
    """The page's form: delete the ``id`` fields, or all with ``all``; back to the page."""
    return await _form_action(request, "purge", "purged")


async def _form_action(request: Request, verb: str, done: str) -> Response:
    refuse_unless_allowed(request)
    count = await _act(request, verb, _chosen_in_form(await read_form(request), verb))
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}/dead-letters?{done}={count}", status_code=303)


def routes() -> list[Route]:
    """The dead letters' API and page routes."""
    return [
        Route("/api/dead-letters", list_letters, methods=["GET"]),
        Route("/api/dead-letters/requeue", requeue_letters, methods=["POST"]),
        Route("/api/dead-letters/purge", purge_letters, methods=["POST"]),
        Route("/dead-letters", page, methods=["GET"]),
        Route("/dead-letters/requeue", requeue_form, methods=["POST"]),
        Route("/dead-letters/purge", purge_form, methods=["POST"]),
    ]
